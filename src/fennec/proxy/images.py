"""Reading a task's images: a class-per-folder tree, a list of paths, or arrays; sampled per class."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .._checks import integer
from ._optional import require
from .preprocess import as_rgb

if TYPE_CHECKING:
    from PIL import Image
    from PIL.Image import Image as _PILImage  # read_image's local ``Image`` shadows the module

__all__ = ["ImageSet", "check_task_folder", "load_images", "IMAGE_EXTENSIONS", "read_image"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


@dataclass
class ImageSet:
    """Images of one task, with labels when known.

    ``labels`` index into ``classes`` (contiguous 0..K-1) or are None (unlabelled);
    ``paths`` name the file of each image when it came from disk; ``skipped``
    counts unreadable files (named in ``skipped_files``); ``notes`` say what
    was changed from the request (classes with fewer images than asked...).
    """

    images: list[Any]
    labels: np.ndarray | None
    classes: list[str]
    skipped: int = 0
    paths: list[str | None] | None = None  # None for an image given in memory
    skipped_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


class UnreadableImage(ValueError):
    """A file that is not a decodable image, or one refused by the pixel limit."""


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None,
               max_side: int | None = None) -> Image.Image:
    """Decodes one image file into an RGB or L PIL image, fully loaded.

    Refuses (UnreadableImage) files Pillow cannot decode and images over
    ``max_pixels`` pixels (default Pillow's ``Image.MAX_IMAGE_PIXELS``), checked
    from the header before decoding. Images larger than ``max_side`` on a side
    are shrunk, keeping their aspect ratio, to bound memory. EXIF orientation is applied.
    """
    Image = require("PIL.Image", "reading images")
    ImageOps = require("PIL.ImageOps", "reading images")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # the pixel limit is enforced below; Pillow's own warning would be a duplicate
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if limit and width * height > limit:
                    raise UnreadableImage(
                        f"{path}: {width}x{height} = {width * height} pixels is over the limit of {limit}"
                    )
                if max_side and image.format == "JPEG":
                    image.draft("RGB", (max_side, max_side))  # decode at a reduced scale: much faster
                image.load()
                image = ImageOps.exif_transpose(image)
                if image.mode not in ("RGB", "L"):  # one conversion policy for files and arrays
                    image = Image.fromarray(as_rgb(image, str(path)))
                if max_side and max(image.size) > max_side:
                    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
                loaded: _PILImage = image
                return loaded
    except UnreadableImage:
        raise
    except Exception as err:  # a corrupt file may raise anything from the decoder; never crash on it
        raise UnreadableImage(f"{path}: cannot decode the image ({type(err).__name__}: {err})") from None


def _class_labels(labels: Sequence[Any] | np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """Labels of any hashable kind -> contiguous indices and the class names, sorted."""
    values = np.asarray(labels)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"labels must be 1-D with one entry per image ({n}), got shape {values.shape}")
    if values.dtype.kind in "iu":
        if n and values.min() < 0:
            raise ValueError(f"labels must be non-negative class indices, got {int(values.min())}")
    elif values.dtype.kind not in "UO":
        raise TypeError(f"labels must be integers or strings, got dtype {values.dtype}")
    uniques, index = np.unique(values, return_inverse=True)
    return index.astype(np.int64), [str(u) for u in uniques]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def check_task_folder(root: str | os.PathLike[str], *, min_classes: int = 2) -> list[str]:
    """The classes of a labelled task folder (``root/<class>/<image>``), or a ValueError that
    says what such a folder looks like: a ranking needs labels, so loose images or a single
    class would give a descriptor unlike any known task's."""
    folder = Path(root)
    layout = (f"a task folder holds one sub-folder per class, at least {min_classes}: "
              f"{folder}/<class>/<image>, e.g. {folder}/cat/001.jpg and {folder}/dog/001.jpg")
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; {layout}")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    counts = {p.name: len(_image_files(p)) for p in class_dirs}
    classes = [name for name, n in counts.items() if n]
    if len(classes) >= min_classes:
        return classes
    if not class_dirs:
        loose = len(_image_files(folder))
        found = f"{loose} image file(s) and no class sub-folders" if loose else "no class sub-folders"
    elif not classes:
        found = f"{len(class_dirs)} sub-folder(s) and no image files in them"
    else:
        found = (f"{len(classes)} {'class' if len(classes) == 1 else 'classes'} with images "
                 f"({', '.join(f'{c!r}: {counts[c]}' for c in classes)})")
    raise ValueError(f"{folder}: {found}; {layout}")


def _folder_entries(root: Path) -> tuple[list[Any], list[int] | None, list[str], list[str]]:
    notes: list[str] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        files = _image_files(root)
        if not files:
            raise ValueError(f"source: {root} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return [str(p) for p in files], None, [], notes
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        notes.append(f"{len(loose)} image files at the top of {root} ignored: images are read from "
                     "the class sub-folders")
    entries: list[Any] = []
    labels: list[int] = []
    classes: list[str] = []
    for folder in class_dirs:
        files = _image_files(folder)
        if not files:
            notes.append(f"class folder {folder.name!r} holds no image files; left out")
            continue
        entries += [str(p) for p in files]
        labels += [len(classes)] * len(files)
        classes.append(folder.name)
    if not entries:
        raise ValueError(f"source: no image files in the class sub-folders of {root}")
    return entries, labels, classes, notes


def _from_folder(root: Path, labels: Sequence[Any] | np.ndarray | None,
                 ) -> tuple[list[Any], np.ndarray | None, list[str], list[str]]:
    if not root.exists():
        raise ValueError(f"source: {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"source: {root} is a file; give a folder, or a list of paths")
    if labels is not None:
        raise ValueError("labels: a folder's classes come from its sub-folders; do not pass labels")
    entries, raw_labels, classes, notes = _folder_entries(root)
    label_array = None if raw_labels is None else np.asarray(raw_labels, dtype=np.int64)
    return entries, label_array, classes, notes


def _check_image_array(source: np.ndarray) -> None:
    if source.dtype != np.uint8:
        raise TypeError(f"source: image arrays must be uint8, got dtype {source.dtype}")
    if source.ndim not in (3, 4) or (source.ndim == 4 and source.shape[3] not in (1, 3, 4)):
        raise ValueError(f"source: an image array must be (N, H, W) or (N, H, W, C) with C in "
                         f"1, 3, 4; got shape {source.shape}")


def _source_entries(source: str | os.PathLike[str] | Sequence[Any] | np.ndarray,
                    labels: Sequence[Any] | np.ndarray | None,
                    ) -> tuple[list[Any], np.ndarray | None, list[str], list[str]]:
    """The images (paths or in-memory) of ``source``, their class indices, the classes and notes."""
    label_array: np.ndarray | None
    classes: list[str]
    if isinstance(source, (str, os.PathLike)):
        return _from_folder(Path(source), labels)
    if isinstance(source, np.ndarray):
        _check_image_array(source)
        entries = list(source)
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        entries = [os.fspath(e) if isinstance(e, os.PathLike) else e for e in source]
    else:
        raise TypeError(
            f"source must be a folder path, a sequence of paths or images, or a uint8 array; "
            f"got {type(source).__name__}"
        )
    label_array, classes = (None, []) if labels is None else _class_labels(labels, len(entries))
    return entries, label_array, classes, []


@dataclass
class _Decoder:
    """Decodes chosen entries, keeping the images and the unreadable files' names."""

    strict: bool
    max_pixels: int | None
    max_side: int | None
    decoded: dict[int, object] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)

    def take(self, i: int, entry: Any) -> bool:
        """True when entry ``i`` gave an image; False when it was unreadable and skipped."""
        if not isinstance(entry, str):
            self.decoded[i] = entry
            return True
        try:
            self.decoded[i] = read_image(entry, max_pixels=self.max_pixels, max_side=self.max_side)
            return True
        except UnreadableImage as err:
            if self.strict:
                raise ValueError(f"unreadable image (strict=True): {err}") from None
            self.skipped_files.append(entry)
            return False


def _sample(entries: list[Any], label_array: np.ndarray | None, classes: list[str],
            per_class: int | None, seed: int, decoder: _Decoder, notes: list[str]) -> list[int]:
    """Rows chosen per class (all of them without ``per_class``), in draw order; notes shortfalls."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(len(entries))] if label_array is None else [
        np.flatnonzero(label_array == c) for c in range(len(classes))
    ]
    chosen: list[int] = []
    for c, members in enumerate(groups):
        order = members if per_class is None else rng.permutation(members)
        kept = 0
        for row in order:
            if per_class is not None and kept == per_class:
                break
            if decoder.take(int(row), entries[int(row)]):
                chosen.append(int(row))
                kept += 1
        name = classes[c] if label_array is not None else "all images"
        if per_class is not None and kept < per_class:
            notes.append(f"class {name!r}: {kept} readable images, fewer than per_class={per_class}; "
                         f"took all {kept}")
        if kept == 0 and label_array is not None:
            notes.append(f"class {name!r}: no readable image")
    return chosen


def _image_set(entries: list[Any], chosen: list[int], label_array: np.ndarray | None,
               classes: list[str], decoder: _Decoder, notes: list[str]) -> ImageSet:
    skipped_files = decoder.skipped_files
    if not chosen:
        raise ValueError(f"source: none of the {len(entries)} images could be read "
                         f"({len(skipped_files)} unreadable, first: {skipped_files[:1]})")
    chosen = sorted(chosen)
    from_disk = any(isinstance(entries[i], str) for i in chosen)
    return ImageSet(
        images=[decoder.decoded[i] for i in chosen],
        labels=None if label_array is None else label_array[chosen],
        classes=list(classes),
        skipped=len(skipped_files),
        paths=[entries[i] if isinstance(entries[i], str) else None for i in chosen] if from_disk else None,
        skipped_files=skipped_files,
        notes=notes,
    )


def load_images(source: str | os.PathLike[str] | Sequence[Any] | np.ndarray, *,
                labels: Sequence[Any] | np.ndarray | None = None, per_class: int | None = None,
                seed: int = 0, strict: bool = False, max_pixels: int | None = None,
                max_side: int | None = 512) -> ImageSet:
    """Reads a task's images, optionally sampling ``per_class`` of each class.

    Parameters
    ----------
    source : a folder path, a sequence, or a uint8 array
        A folder with one sub-folder per class (the folder names are the
        classes; images may sit deeper inside), or a folder of images with no
        sub-folders (unlabelled); a sequence of image paths and/or in-memory
        images (PIL or uint8 arrays); or an array (N, H, W) or (N, H, W, C).
    labels : optional, one per image (sequence or array sources)
        Integers or strings; they are renumbered 0..K-1 in sorted order and
        ``classes`` keeps their original values as strings.
    per_class : optional int
        How many images to take from each class (from the whole set when
        unlabelled), drawn at random with ``seed``. A class with fewer
        readable images gives all it has, and a note says so. Unreadable files
        are replaced by further draws, so a class still gives ``per_class``
        when it has enough readable images.
    strict : bool
        False: unreadable or corrupt files are skipped and counted. True: the
        first one raises ValueError naming the file.
    max_pixels : optional int
        Images with more pixels are refused before decoding (a guard against
        decompression bombs); default Pillow's ``Image.MAX_IMAGE_PIXELS``.
    max_side : optional int
        Decoded images larger than this on a side are shrunk, keeping their
        aspect ratio (bounds memory; proxies read 224-pixel inputs). None keeps them whole.
    """
    if per_class is not None:
        per_class = integer(per_class, "per_class", low=1)
    if max_pixels is not None:
        max_pixels = integer(max_pixels, "max_pixels", low=1)
    if max_side is not None:
        max_side = integer(max_side, "max_side", low=1)
    seed = integer(seed, "seed")
    entries, label_array, classes, notes = _source_entries(source, labels)
    if not entries:
        raise ValueError("source: no images given")
    decoder = _Decoder(strict=strict, max_pixels=max_pixels, max_side=max_side)
    chosen = _sample(entries, label_array, classes, per_class, seed, decoder, notes)
    return _image_set(entries, chosen, label_array, classes, decoder, notes)
