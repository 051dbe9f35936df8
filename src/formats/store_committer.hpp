// StoreCommitter: commits a RankStore's layer records on one background thread, so that writing
// layer l (HDF5, checksum, fsync: seconds per layer) overlaps computing layer l+1. Owns: the
// worker, a bounded queue, the first commit error, and the rule that every HDF5 call on the store
// is serialized. Does not own the store (its commit protocol and crash safety are unchanged).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "formats/layer_record.hpp"
#include "formats/rank_store.hpp"

namespace qf::formats {

// While a committer exists, use the store only through it: HDF5 is built without thread safety,
// so the worker (commit_layer) and the caller (read_layer) take turns on one mutex.
// Errors: a failed commit is kept and rethrown, on the calling thread, by the next submit or
// drain; callers make those calls inside run_on_all_ranks so a failure stops every rank. A crash
// with a commit in flight loses that layer only (the store's protocol): resume recomputes it.
class StoreCommitter {
 public:
  struct Stats {
    uint64_t n_commits = 0;           // records committed
    uint64_t n_bytes = 0;             // layer-file bytes committed
    double write_seconds = 0;         // the worker inside commit_layer (in the background)
    double wait_seconds = 0;          // callers blocked in submit / drain / read_layer
    double after_commit_seconds = 0;  // the worker in the after-commit callback
  };

  // One finished commit, for progress reporting (take_committed).
  struct Committed {
    std::string stage;
    int layer = 0;
    uint64_t n_bytes = 0;
    double seconds = 0;    // inside commit_layer
    double unix_time = 0;  // when it finished (seconds since the epoch, this host's clock)
  };

  // What the worker runs for a record: store.commit_layer, unless tests pass a stand-in (called
  // on the worker thread, holding the store lock).
  using CommitFn = std::function<void(const LayerRecord& record, const std::string& stage)>;

  // Called on the worker after each successful commit, with the record still held (the output
  // streamer writes a committed layer's tensors into the staged export from it). Its exception
  // is kept and rethrown like a failed commit, but the layer stays committed.
  using AfterCommitFn = std::function<void(const LayerRecord& record, const std::string& stage)>;

  // Called on the worker before each commit, without the store lock, with the record to change
  // (the quantize job marks the tensors the source already holds: formats/source_derived). Its
  // exception fails the commit like commit_layer's.
  using BeforeCommitFn = std::function<void(LayerRecord& record, const std::string& stage)>;

  explicit StoreCommitter(RankStore& store, CommitFn commit = nullptr);
  // Set before the first submit.
  void set_before_commit(BeforeCommitFn before_commit) {
    before_commit_ = std::move(before_commit);
  }
  void set_after_commit(AfterCommitFn after_commit) { after_commit_ = std::move(after_commit); }
  ~StoreCommitter();  // drains; logs (never throws) an error no caller has seen
  StoreCommitter(const StoreCommitter&) = delete;
  StoreCommitter& operator=(const StoreCommitter&) = delete;

  // Queues `record` for commit_layer(record, stage). Blocks while a record is already waiting
  // (one waits while one is written: at most two records held here). Rethrows an earlier failed
  // commit; refuses a (layer, stage) already committed or queued.
  void submit(LayerRecord record, const std::string& stage);
  // Waits until every queued record is committed; rethrows the first failure not yet rethrown.
  void drain();
  // Committed, or queued for commit (does not wait, reads no file).
  bool has_layer(int layer, const std::string& stage) const;
  // The store's read_layer, after that layer's queued commit (if any) finished.
  LayerRecord read_layer(int layer, const std::string& stage);
  Stats stats() const;
  // The commits finished since the last call, in commit order (does not wait).
  std::vector<Committed> take_committed();
  const std::string& dir() const { return dir_; }

 private:
  using Key = std::pair<std::string, int>;  // (stage, layer)
  struct Job {
    LayerRecord record;
    std::string stage;
  };
  void run();
  void rethrow_locked();
  bool pending_locked(const Key& key) const;

  RankStore& store_;
  const std::string dir_;
  CommitFn commit_;
  BeforeCommitFn before_commit_;
  AfterCommitFn after_commit_;
  std::mutex store_mutex_;  // held around every call into store_ (HDF5) after construction

  mutable std::mutex mutex_;  // everything below
  std::condition_variable changed_;
  std::deque<Job> waiting_;  // at most kMaxWaiting
  bool writing_ = false;     // the worker holds a job
  Key writing_key_;
  std::set<Key> known_;  // committed or queued
  bool stopping_ = false;
  std::exception_ptr error_;  // first failure not yet rethrown
  Stats stats_;
  std::vector<Committed> committed_;  // finished, not yet taken
  std::thread worker_;
};

}  // namespace qf::formats
