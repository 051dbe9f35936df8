// Which work store an export came from (issue 18 defect 8): the quantization report beside OUT
// records the XXH64 of the store's provenance (RankStore::provenance_xxh64), and `--export-only
// --shard K` compares it with the store it was given before it touches OUT (export_one_shard
// then also compares the rebuilt shard with the digest OUT's quantforge_checksums.json records).
// Owns that check. Does not own the report file (report/) nor what the provenance holds
// (quantize_job.cpp).
#pragma once
#include <string>

namespace qf::pipeline {

// --export-only --shard: OUT must be an export with a checksum for `shard`, and the work store in
// `work_dir` (provenance digest `store_digest`) the one OUT's report records. A report without
// the record (written before it existed) is a warning: the rebuilt shard's checksum decides.
// Throws naming OUT, the store and both digests; reads only.
void check_store_matches_output(const std::string& out_dir, const std::string& shard,
                                const std::string& work_dir, const std::string& store_digest);

}  // namespace qf::pipeline
