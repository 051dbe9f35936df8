// StoreCommitter: one worker thread running RankStore::commit_layer for queued records.
#include "formats/store_committer.hpp"

#include <chrono>

#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"

namespace qf::formats {
namespace {

constexpr size_t kMaxWaiting = 1;  // records queued behind the one being written

// The exception being handled as a qf::Error whose text starts with `prefix` (which layer and
// what failed), then its own message: what the caller sees of a background failure.
std::exception_ptr prefixed_error(const std::string& prefix) {
  try {
    throw;
  } catch (const Error& e) {
    return std::make_exception_ptr(Error(prefix + e.what(), prefix + e.message()));
  } catch (const std::exception& e) {
    return std::make_exception_ptr(Error(prefix + e.what(), prefix + e.what()));
  } catch (...) {
    return std::make_exception_ptr(Error(prefix + "unknown error", prefix + "unknown error"));
  }
}

}  // namespace

StoreCommitter::StoreCommitter(RankStore& store, CommitFn commit)
    : store_(store), dir_(store.dir()), commit_(std::move(commit)) {
  if (!commit_) {
    commit_ = [this](const LayerRecord& record, const std::string& stage) {
      store_.commit_layer(record, stage);
    };
  }
  for (const StoreFileEntry& entry : store.files()) {
    known_.insert({entry.stage, entry.layer});
  }
  worker_ = std::thread([this] { run(); });
}

StoreCommitter::~StoreCommitter() {
  try {
    drain();
  } catch (const std::exception& e) {
    log_error(e.what());
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void StoreCommitter::rethrow_locked() {
  if (!error_) return;
  std::exception_ptr error = error_;
  error_ = nullptr;
  std::rethrow_exception(error);
}

bool StoreCommitter::pending_locked(const Key& key) const {
  if (writing_ && writing_key_ == key) return true;
  for (const Job& job : waiting_) {
    if (job.stage == key.first && job.record.layer == key.second) return true;
  }
  return false;
}

void StoreCommitter::submit(LayerRecord record, const std::string& stage) {
  const Key key{stage, record.layer};
  std::unique_lock<std::mutex> lock(mutex_);
  rethrow_locked();
  QF_CHECK(!known_.count(key), dir_ + ":", "layer", record.layer, "stage", stage,
           "is already committed or queued for commit");
  const auto start = std::chrono::steady_clock::now();
  changed_.wait(lock, [this] { return waiting_.size() < kMaxWaiting || error_; });
  stats_.wait_seconds += seconds_since(start);
  rethrow_locked();
  known_.insert(key);
  waiting_.push_back(Job{std::move(record), stage});
  lock.unlock();
  changed_.notify_all();
}

void StoreCommitter::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto start = std::chrono::steady_clock::now();
  changed_.wait(lock, [this] { return waiting_.empty() && !writing_; });
  stats_.wait_seconds += seconds_since(start);
  rethrow_locked();
}

bool StoreCommitter::has_layer(int layer, const std::string& stage) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return known_.count({stage, layer}) != 0;
}

LayerRecord StoreCommitter::read_layer(int layer, const std::string& stage) {
  const auto start = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !pending_locked({stage, layer}); });
  }
  LayerRecord record;
  double waited = 0;
  {
    std::lock_guard<std::mutex> store_lock(store_mutex_);  // waits for a commit in flight
    waited = seconds_since(start);
    record = store_.read_layer(layer, stage);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.wait_seconds += waited;
  return record;
}

StoreCommitter::Stats StoreCommitter::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::vector<StoreCommitter::Committed> StoreCommitter::take_committed() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<Committed> taken;
  taken.swap(committed_);
  return taken;
}

void StoreCommitter::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
    if (waiting_.empty()) return;  // stopping with nothing queued
    Job job = std::move(waiting_.front());
    waiting_.pop_front();
    writing_ = true;
    writing_key_ = {job.stage, job.record.layer};
    lock.unlock();
    changed_.notify_all();  // a queue slot is free

    std::exception_ptr failure;
    uint64_t n_bytes = 0;
    if (before_commit_) {
      try {
        before_commit_(job.record, job.stage);
      } catch (...) {
        failure = prefixed_error(str_cat(dir_, ": preparing layer ", job.record.layer, " (stage ",
                                         job.stage, ") for its commit failed: "));
      }
    }
    const auto start = std::chrono::steady_clock::now();
    if (!failure) {
      std::lock_guard<std::mutex> store_lock(store_mutex_);
      try {
        commit_(job.record, job.stage);
        for (const StoreFileEntry& entry : store_.files()) {
          if (entry.stage == job.stage && entry.layer == job.record.layer) n_bytes = entry.n_bytes;
        }
      } catch (...) {
        failure = prefixed_error(str_cat(dir_, ": committing layer ", job.record.layer, " (stage ",
                                         job.stage, ") in the background failed: "));
      }
    }
    const double seconds = seconds_since(start);
    std::exception_ptr after_failure;
    double after_seconds = 0;
    if (!failure && after_commit_) {
      const auto after_start = std::chrono::steady_clock::now();
      try {
        after_commit_(job.record, job.stage);
      } catch (...) {
        after_failure = prefixed_error(str_cat("after committing layer ", job.record.layer,
                                               " (stage ", job.stage, ") to ", dir_, ": "));
      }
      after_seconds = seconds_since(after_start);
    }
    job = Job{};  // free the record before the next one is taken

    lock.lock();
    writing_ = false;
    stats_.write_seconds += seconds;
    stats_.after_commit_seconds += after_seconds;
    if (after_failure && !error_) error_ = after_failure;
    if (failure) {
      known_.erase(writing_key_);  // not committed: has_layer must say so
      if (!error_) {
        error_ = failure;
      } else {
        // Only the first error reaches a caller; later ones are only logged.
        try {
          std::rethrow_exception(failure);
        } catch (const std::exception& e) {
          log_error(e.what());
        }
      }
    } else {
      ++stats_.n_commits;
      stats_.n_bytes += n_bytes;
      committed_.push_back(Committed{
          writing_key_.first, writing_key_.second, n_bytes, seconds,
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count()});
    }
    changed_.notify_all();
  }
}

}  // namespace qf::formats
