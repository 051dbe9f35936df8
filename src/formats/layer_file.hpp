// One rank-store layer file: a LayerRecord as an HDF5 file (layout: rank_store.hpp).
// Owns: the record <-> HDF5 mapping and the file's header attributes. Does not own: temp
// names, renames, checksums or the manifest (rank_store).
#pragma once
#include <cstdint>
#include <string>

#include "formats/layer_record.hpp"

namespace qf::formats {

constexpr const char* kLayerFileFormat = "quantforge.rank_store.layer";
// 2: derived tensors; 3: the block-scale rule and its shift (a file is written with the lowest
// version that holds it, so older builds read what they can).
constexpr int64_t kLayerFileFormatVersion = 3;

// The root attributes of a layer file.
struct LayerFileHeader {
  int64_t format_version = 0;
  int layer = -1;
  std::string stage;
  int rank = -1;
};

// Writes `record` (validated first) as a complete HDF5 file at `path`, truncating any file
// there. Not atomic and not fsynced: the caller writes a temp name and renames it.
void write_layer_file(const std::string& path, const LayerRecord& record, const std::string& stage,
                      int rank);

// Reads a layer file back; rejects another format or a newer format version, unknown dtypes,
// shapes that disagree with the byte count, and unexpected objects. Fills `header` if given.
LayerRecord read_layer_file(const std::string& path, LayerFileHeader* header = nullptr);

}  // namespace qf::formats
