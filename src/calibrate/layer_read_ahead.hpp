// LayerReadAhead: layers' owned source bytes read on background threads, one layer after
// another, each taken by the fetch of its layer. Owns: the queued reads (their threads are
// joined on destruction). Does not own: what a read does (the Reader; the exchange's in practice).
#pragma once
#include <deque>
#include <functional>
#include <future>

#include "calibrate/layer_weight_exchange.hpp"

namespace qf::pipeline {

class LayerReadAhead {
 public:
  // Reads one layer's owned bytes; errors are kept in OwnedLayerBytes::error (a throw is caught
  // and kept there too), so no thread throws across threads.
  using Reader = std::function<OwnedLayerBytes(int layer)>;

  LayerReadAhead() = default;  // no reader: take() and queue() refuse
  explicit LayerReadAhead(Reader read) : read_(std::move(read)) {}
  LayerReadAhead(LayerReadAhead&&) = default;
  LayerReadAhead& operator=(LayerReadAhead&&) = default;
  ~LayerReadAhead() = default;  // each queued read's future waits for its thread

  bool has_reader() const { return static_cast<bool>(read_); }

  // Queues `layer`'s read (a no-op if it is queued already). It starts once the read queued
  // before it has finished: one read stream at a time, so the layer waited for first never
  // shares the disk with the next one.
  void queue(int layer);
  bool queued(int layer) const;
  int n_queued() const { return static_cast<int>(reads_.size()); }

  // `layer`'s bytes: its queued read's (reads queued before it are waited for and dropped: a
  // resume that jumped), else, with every queued read dropped, read now on this thread.
  OwnedLayerBytes take(int layer);

 private:
  struct QueuedRead {
    int layer = -1;
    std::future<OwnedLayerBytes> bytes;
  };
  Reader read_;
  std::deque<QueuedRead> reads_;
  std::shared_future<void> last_done_;  // the last queued read's end (invalid: none yet)
};

// The exchange's read_owned_layer as a Reader (the exchange outlives the reads).
LayerReadAhead::Reader owned_layer_reader(const LayerWeightExchange& exchange);

}  // namespace qf::pipeline
