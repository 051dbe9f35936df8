// StoreCommitter: records are committed in submit order, the queue holds one record behind the
// one being written, a failed commit is rethrown by the next submit or drain (never by the
// destructor), and reads wait for the commit in flight (HDF5 calls never overlap).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/rank_store.hpp"
#include "formats/store_committer.hpp"
#include "formats_test_util.hpp"
#include "rank_store_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;
using formats::StoreCommitter;

namespace {

// A commit stand-in that blocks until the test opens it, then commits for real. Records the
// order of commits.
class GatedCommit {
 public:
  explicit GatedCommit(RankStore& store) : store_(store) {}
  StoreCommitter::CommitFn fn() {
    return [this](const LayerRecord& record, const std::string& stage) {
      std::unique_lock<std::mutex> lock(mutex_);
      ++n_started_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return n_allowed_ >= n_started_; });
      order_.push_back(record.layer);
      lock.unlock();
      store_.commit_layer(record, stage);
    };
  }
  void allow(int n) {
    std::lock_guard<std::mutex> lock(mutex_);
    n_allowed_ += n;
    changed_.notify_all();
  }
  void wait_started(int n) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return n_started_ >= n; });
  }
  std::vector<int> order() {
    std::lock_guard<std::mutex> lock(mutex_);
    return order_;
  }

 private:
  RankStore& store_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int n_started_ = 0, n_allowed_ = 0;
  std::vector<int> order_;
};

// Long enough that a wrongly unblocked thread has finished; never needed by a correct one.
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(200)); }

}  // namespace

TEST_CASE("records are committed in submit order and read back equal", "[store_committer]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  store.commit_layer(make_layer_record(0, kStageCalib), kStageCalib);  // an earlier run's layer
  const std::vector<int> layers = {3, 1, 4, 0, 5, 2};
  {
    StoreCommitter committer(store);
    CHECK(committer.has_layer(0, kStageCalib));  // committed before the committer existed
    CHECK_FALSE(committer.has_layer(0, kStageQuant));
    for (const int layer : layers)
      committer.submit(make_layer_record(layer, kStageQuant), kStageQuant);
    for (const int layer : layers) CHECK(committer.has_layer(layer, kStageQuant));
    // A queued layer is read after its commit.
    CHECK(committer.read_layer(2, kStageQuant) == make_layer_record(2, kStageQuant));
    require_error([&] { committer.submit(make_layer_record(4, kStageQuant), kStageQuant); },
                  {"already committed or queued"});
    committer.drain();
    const StoreCommitter::Stats stats = committer.stats();
    CHECK(stats.n_commits == layers.size());
    CHECK(stats.n_bytes > 0);
  }
  CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0, 1, 2, 3, 4, 5});
  const RankStore reopened = RankStore::open(tmp.path(), 0);
  for (const int layer : layers) {
    CHECK(reopened.read_layer(layer, kStageQuant) == make_layer_record(layer, kStageQuant));
  }

  TempDir tmp2;
  RankStore store2 = RankStore::create(tmp2.path(), 0, 1, make_provenance());
  GatedCommit gate(store2);
  StoreCommitter committer(store2, gate.fn());
  for (const int layer : layers) {
    gate.allow(1);
    committer.submit(make_layer_record(layer, kStageQuant), kStageQuant);
  }
  committer.drain();
  CHECK(gate.order() == layers);
}

TEST_CASE("submit blocks while one record waits behind the one being written",
          "[store_committer]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  GatedCommit gate(store);
  StoreCommitter committer(store, gate.fn());
  committer.submit(make_layer_record(0, kStageQuant), kStageQuant);
  gate.wait_started(1);  // layer 0 is being written (held at the gate)
  committer.submit(make_layer_record(1, kStageQuant), kStageQuant);  // waits in the queue
  std::atomic<bool> third_returned{false};
  std::thread third([&] {
    committer.submit(make_layer_record(2, kStageQuant), kStageQuant);
    third_returned = true;
  });
  settle();
  CHECK_FALSE(third_returned);  // queue full: layer 2 waits for a slot
  gate.allow(1);                // layer 0 done, layer 1 starts: a slot frees
  third.join();
  CHECK(third_returned);
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    committer.drain();
    drained = true;
  });
  settle();
  CHECK_FALSE(drained);  // layers 1 and 2 are not written yet
  gate.allow(2);
  drainer.join();
  CHECK(drained);
  CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0, 1, 2});
}

TEST_CASE("a failed commit is rethrown by the next submit or drain, once", "[store_committer]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  LayerRecord bad = make_layer_record(1, kStageQuant);
  bad.tensors[1].name = bad.tensors[0].name;  // commit_layer refuses duplicate tensor names
  StoreCommitter committer(store);
  committer.submit(make_layer_record(0, kStageQuant), kStageQuant);
  committer.submit(bad, kStageQuant);
  SECTION("by drain") {
    require_error([&] { committer.drain(); },
                  {"layer 1", "in the background failed", "duplicate tensor"});
  }
  SECTION("by the next submit") {
    while (committer.has_layer(1, kStageQuant)) {  // until the worker has failed on it
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    require_error([&] { committer.submit(make_layer_record(2, kStageQuant), kStageQuant); },
                  {"layer 1", "in the background failed", "duplicate tensor"});
    CHECK_FALSE(committer.has_layer(2, kStageQuant));  // refused, not queued
  }
  committer.drain();  // reported once: nothing more to rethrow
  CHECK_FALSE(committer.has_layer(1, kStageQuant));
  CHECK(committer.has_layer(0, kStageQuant));
  // The failed layer can be submitted again (resume semantics: it was never committed).
  committer.submit(make_layer_record(1, kStageQuant), kStageQuant);
  committer.drain();
  CHECK(committer.read_layer(1, kStageQuant) == make_layer_record(1, kStageQuant));
}

TEST_CASE("the destructor drains and logs a failure instead of throwing", "[store_committer]") {
  TempDir tmp;
  RankStore writer = RankStore::create(tmp.path(), 0, 1, make_provenance());
  writer.commit_layer(make_layer_record(0, kStageQuant), kStageQuant);
  RankStore reader = RankStore::open(tmp.path(), 0);  // commits fail: read-only
  CHECK_NOTHROW([&] {
    StoreCommitter committer(reader);
    committer.submit(make_layer_record(1, kStageQuant), kStageQuant);  // fails in the background
  }());
  CHECK(reader.committed_layers(kStageQuant) == std::vector<int>{0});
  CHECK(RankStore::open(tmp.path(), 0).committed_layers(kStageQuant) == std::vector<int>{0});
}

TEST_CASE("reads wait for the commit in flight (HDF5 calls never overlap)", "[store_committer]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  store.commit_layer(make_layer_record(0, kStageQuant), kStageQuant);
  GatedCommit gate(store);
  StoreCommitter committer(store, gate.fn());
  committer.submit(make_layer_record(1, kStageQuant), kStageQuant);
  gate.wait_started(1);  // the worker holds the store
  std::atomic<bool> read_returned{false};
  LayerRecord read;
  std::thread reader([&] {
    read = committer.read_layer(0, kStageQuant);
    read_returned = true;
  });
  settle();
  CHECK_FALSE(read_returned);
  CHECK(committer.has_layer(1, kStageQuant));  // answered without waiting
  gate.allow(1);
  reader.join();
  CHECK(read == make_layer_record(0, kStageQuant));
  committer.drain();
  CHECK(committer.stats().wait_seconds > 0);
}

TEST_CASE("the after-commit callback sees each committed record; its failure keeps the layer",
          "[store_committer]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  StoreCommitter committer(store);
  std::vector<std::pair<int, std::string>> seen;  // only the worker appends, drain orders it
  committer.set_after_commit([&](const LayerRecord& record, const std::string& stage) {
    // Called after the commit: the layer is in the store's manifest already.
    CHECK(store.has_layer(record.layer, stage));
    CHECK(record == make_layer_record(record.layer, stage));
    seen.emplace_back(record.layer, stage);
    if (record.layer == 2) throw Error("stream target full", "stream target full");
  });
  committer.submit(make_layer_record(0, kStageQuant), kStageQuant);
  committer.submit(make_layer_record(1, kStageCalib), kStageCalib);
  committer.drain();
  CHECK(seen == std::vector<std::pair<int, std::string>>{{0, kStageQuant}, {1, kStageCalib}});
  committer.submit(make_layer_record(2, kStageQuant), kStageQuant);
  require_error([&] { committer.drain(); }, {"after committing layer 2", "stream target full"});
  CHECK(committer.has_layer(2, kStageQuant));  // committed: resume must not redo it
  CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0, 2});
  CHECK(committer.stats().n_commits == 3);
}

TEST_CASE("the before-commit callback changes what is committed; its failure commits nothing",
          "[store_committer]") {
  TempDir tmp;
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  StoreCommitter committer(store);
  committer.set_before_commit([&](LayerRecord& record, const std::string& stage) {
    CHECK_FALSE(store.has_layer(record.layer, stage));  // before the commit
    if (record.layer == 3) throw Error("source unreadable", "source unreadable");
    record.attrs["prepared"] = "yes";
  });
  committer.submit(make_layer_record(0, kStageQuant), kStageQuant);
  committer.drain();
  LayerRecord expected = make_layer_record(0, kStageQuant);
  expected.attrs["prepared"] = "yes";
  CHECK(committer.read_layer(0, kStageQuant) == expected);
  committer.submit(make_layer_record(3, kStageQuant), kStageQuant);
  require_error([&] { committer.drain(); }, {"preparing layer 3", "source unreadable"});
  CHECK_FALSE(committer.has_layer(3, kStageQuant));  // resume recomputes it
  CHECK(store.committed_layers(kStageQuant) == std::vector<int>{0});
}
