// LayerReadAhead: reads chained one after another on std::async threads.
#include "calibrate/layer_read_ahead.hpp"

#include <algorithm>
#include <exception>
#include <memory>
#include <utility>

#include "core/check.hpp"

namespace qf::pipeline {

void LayerReadAhead::queue(int layer) {
  QF_CHECK(has_reader(), "LayerReadAhead: queue(", layer, ") without a reader");
  if (queued(layer)) return;
  auto done = std::make_shared<std::promise<void>>();
  std::shared_future<void> before = last_done_;
  last_done_ = done->get_future().share();
  reads_.push_back({layer, std::async(std::launch::async, [read = read_, layer, before, done] {
                      if (before.valid()) before.wait();
                      OwnedLayerBytes bytes;
                      try {
                        bytes = read(layer);
                      } catch (...) {
                        bytes = OwnedLayerBytes{};
                        bytes.layer = layer;
                        bytes.error = std::current_exception();
                      }
                      done->set_value();
                      return bytes;
                    })});
}

bool LayerReadAhead::queued(int layer) const {
  return std::any_of(reads_.begin(), reads_.end(),
                     [layer](const QueuedRead& r) { return r.layer == layer; });
}

OwnedLayerBytes LayerReadAhead::take(int layer) {
  QF_CHECK(has_reader(), "LayerReadAhead: take(", layer, ") without a reader");
  while (!reads_.empty()) {
    QueuedRead front = std::move(reads_.front());
    reads_.pop_front();
    if (front.layer == layer) return front.bytes.get();
    front.bytes.wait();  // a stale read (or, when `layer` is not queued, every read): dropped
  }
  return read_(layer);
}

LayerReadAhead::Reader owned_layer_reader(const LayerWeightExchange& exchange) {
  return [&exchange](int layer) { return exchange.read_owned_layer(layer); };
}

}  // namespace qf::pipeline
