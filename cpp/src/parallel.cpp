#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace fennec {

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int resolve_threads(int requested) {
  return requested <= 0 ? hardware_threads() : requested;
}

namespace {

// Workers sleep on a condition variable between jobs, so a call costs a wake-up,
// not a thread creation. One job runs at a time; concurrent callers queue on job_mutex.
class WorkerPool {
 public:
  // One pool per process. After fork() the child has none of the parent's
  // threads, so it starts a fresh pool; pools are never destroyed, so process
  // exit never waits on a worker.
  static WorkerPool& instance() {
    static std::mutex create_mutex;
    static WorkerPool* pool = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(create_mutex);
    if (pool == nullptr || owner != getpid()) {
      pool = new WorkerPool();
      owner = getpid();
    }
    return *pool;
  }

  void run(int64_t n_tasks, int threads,
           const std::function<void(int64_t, int)>& fn) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    ensure_workers(threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0);
      failed_.store(false);
      error_ = nullptr;
      helpers_wanted_ = threads - 1;
      helpers_done_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return helpers_done_ == helpers_wanted_; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void ensure_workers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      int id = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, id] { loop(id); });
      workers_.back().detach();
    }
  }

  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen && id <= helpers_wanted_; });
        seen = generation_;
      }
      work(id);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++helpers_done_;
      }
      done_.notify_all();
    }
  }

  void work(int worker) {
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) return;
      int64_t task = next_.fetch_add(1);
      if (task >= n_tasks_) return;
      try {
        (*fn_)(task, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true);
      }
    }
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::mutex error_mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  int helpers_wanted_ = 0;
  int helpers_done_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace

void parallel_for(int64_t n_tasks, int threads,
                  const std::function<void(int64_t task, int worker)>& fn) {
  if (n_tasks <= 0) return;
  threads = static_cast<int>(std::min<int64_t>(resolve_threads(threads), n_tasks));
  if (threads <= 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  WorkerPool::instance().run(n_tasks, threads, fn);
}

}  // namespace fennec
