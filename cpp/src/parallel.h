// A small persistent worker pool for the CPU kernels: parallel_for over task ids
// with dynamic scheduling; the calling thread takes part. Internal to the core.
#pragma once
#include <functional>
#include <cstdint>

namespace fennec {

// Number of hardware threads (at least 1).
int hardware_threads();

// Resolves a user thread count: <= 0 means all hardware threads.
int resolve_threads(int requested);

// Runs fn(task, worker) for task in [0, n_tasks) on up to `threads` workers,
// worker in [0, threads). Returns when all tasks are done. An exception thrown
// by fn is rethrown in the caller (the first one wins; remaining tasks are skipped).
void parallel_for(int64_t n_tasks, int threads,
                  const std::function<void(int64_t task, int worker)>& fn);

}  // namespace fennec
