// LayerReadAhead (calibrate/layer_read_ahead): queued reads run one after another, take() hands
// each layer its own read, drops stale ones, reads now when nothing was queued, keeps a
// reader's throw as the layer's error, and its destructor waits for the reads in flight.
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "calibrate/layer_read_ahead.hpp"
#include "catch_compat.hpp"
#include "formats_test_util.hpp"

using qf::pipeline::LayerReadAhead;
using qf::pipeline::OwnedLayerBytes;

namespace {

// A reader that logs "start L" / "end L" and returns one tensor holding the layer number.
struct LoggingReader {
  std::mutex mutex;
  std::vector<std::string> events;
  std::atomic<int> n_reads{0};
  int slow_layer = -1;  // this layer's read sleeps first (so an unchained next read overtakes)
  int throwing_layer = -1;

  void log(const std::string& e) {
    std::lock_guard<std::mutex> lock(mutex);
    events.push_back(e);
  }
  LayerReadAhead::Reader reader() {
    return [this](int layer) {
      ++n_reads;
      log("start " + std::to_string(layer));
      if (layer == slow_layer) std::this_thread::sleep_for(std::chrono::milliseconds(60));
      if (layer == throwing_layer) {
        throw std::runtime_error("disk gone at layer " + std::to_string(layer));
      }
      OwnedLayerBytes bytes;
      bytes.layer = layer;
      bytes.by_native["t"] = {static_cast<uint8_t>(layer)};
      bytes.n_bytes = 1;
      log("end " + std::to_string(layer));
      return bytes;
    };
  }
};

}  // namespace

TEST_CASE("queued reads run one after another, in queue order", "[read_ahead]") {
  LoggingReader r;
  r.slow_layer = 0;
  LayerReadAhead ahead(r.reader());
  ahead.queue(0);
  ahead.queue(1);
  ahead.queue(1);  // already queued: no second read
  REQUIRE(ahead.n_queued() == 2);
  REQUIRE(ahead.queued(0));
  REQUIRE(ahead.queued(1));
  const OwnedLayerBytes l0 = ahead.take(0);
  const OwnedLayerBytes l1 = ahead.take(1);
  REQUIRE(l0.layer == 0);
  REQUIRE(l0.by_native.at("t") == std::vector<uint8_t>{0});
  REQUIRE(l1.by_native.at("t") == std::vector<uint8_t>{1});
  REQUIRE(r.events == std::vector<std::string>{"start 0", "end 0", "start 1", "end 1"});
  REQUIRE(r.n_reads == 2);
  REQUIRE(ahead.n_queued() == 0);
}

TEST_CASE("take() drops stale reads and reads a layer nobody queued", "[read_ahead]") {
  LoggingReader r;
  LayerReadAhead ahead(r.reader());

  SECTION("a later queued layer: the earlier ones are dropped, the later ones kept") {
    ahead.queue(0);
    ahead.queue(1);
    ahead.queue(2);
    REQUIRE(ahead.take(1).layer == 1);
    REQUIRE(ahead.n_queued() == 1);
    REQUIRE(ahead.queued(2));
    REQUIRE(ahead.take(2).layer == 2);
    REQUIRE(r.n_reads == 3);
  }
  SECTION("a layer not queued: every queued read is dropped, the layer read now") {
    ahead.queue(3);
    ahead.queue(4);
    REQUIRE(ahead.take(7).layer == 7);
    REQUIRE(ahead.n_queued() == 0);
    REQUIRE(r.n_reads == 3);
    // The chain still works after the drop.
    ahead.queue(8);
    REQUIRE(ahead.take(8).by_native.at("t") == std::vector<uint8_t>{8});
  }
}

TEST_CASE("a reader's throw becomes the layer's error and the next read still runs",
          "[read_ahead]") {
  LoggingReader r;
  r.throwing_layer = 0;
  LayerReadAhead ahead(r.reader());
  ahead.queue(0);
  ahead.queue(1);
  const OwnedLayerBytes l0 = ahead.take(0);
  REQUIRE(l0.layer == 0);
  REQUIRE(l0.error);
  try {
    std::rethrow_exception(l0.error);
  } catch (const std::runtime_error& e) {
    REQUIRE(std::string(e.what()) == "disk gone at layer 0");
  }
  const OwnedLayerBytes l1 = ahead.take(1);
  REQUIRE_FALSE(l1.error);
  REQUIRE(l1.layer == 1);
}

TEST_CASE("destroying a read-ahead waits for its reads", "[read_ahead]") {
  LoggingReader r;
  r.slow_layer = 1;
  {
    LayerReadAhead ahead(r.reader());
    ahead.queue(0);
    ahead.queue(1);
    ahead.queue(2);
  }
  REQUIRE(r.n_reads == 3);
  REQUIRE(r.events.size() == 6);
  REQUIRE(r.events.back() == "end 2");
}

TEST_CASE("a read-ahead without a reader refuses, naming the layer", "[read_ahead]") {
  LayerReadAhead none;
  REQUIRE_FALSE(none.has_reader());
  qf::formats::test::require_error([&] { none.queue(3); }, {"queue(", "3", "without a reader"});
  qf::formats::test::require_error([&] { (void)none.take(4); }, {"take(", "4", "without a reader"});
}
