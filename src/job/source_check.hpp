// The source checkpoint's identity across the runs of one work store (issue 18 defect 9): taken
// at every start (a stat per file), recorded in every rank's manifest, compared on --resume,
// --export-only and --shard and once more before the export; content digests hashed by each
// rank for its share of the files in the background and recorded as they finish;
// --verify-source re-hashes every file against them. Owns those rules and their messages. Does
// not own the identity's format (formats/source_identity) nor the provenance comparison.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/rank_store.hpp"
#include "formats/source_identity.hpp"

namespace qf::pipeline {

// Every file of the source that the output depends on: the shards, the index, config.json and
// every other file the export copies. Sorted.
std::vector<std::string> source_identity_files(const formats::CheckpointDir& source);

// What --verify-source found: the content digest ({file: xxh64 hex}) of every source file, and
// the files whose digest matched one a rank store had recorded (proven unchanged).
struct SourceDigests {
  std::map<std::string, std::string> digests;
  std::set<std::string> matched_recorded;
};

// Collective (--verify-source): rank r hashes files i % R == r; every rank gets every digest.
// Files whose content differs from a digest recorded in any rank store of `work_dir` (stores of
// `n_store_ranks` ranks; 0: no store) are an error on every rank naming them.
SourceDigests verify_source_contents(const formats::CheckpointDir& source,
                                     const std::vector<std::string>& files,
                                     const std::string& work_dir, int n_store_ranks,
                                     dist::Communicator& comm);

// verify_source_contents for every source file against the stores in `work_dir` (none yet: only
// hashed). Collective.
SourceDigests verify_source_against_stores(const formats::CheckpointDir& source,
                                           const std::string& work_dir, dist::Communicator& comm);

// A writable store at the start of a run: compares the identity it recorded with `current`
// (resume; a difference refuses naming each file, unless `verified` holds the re-hashed
// contents, which must then match what was recorded), then records `current` (with every digest
// known). A version 1 store (no identity recorded) resumes with a warning.
void check_and_record_source(formats::RankStore& store, formats::SourceIdentity current,
                             const SourceDigests* verified);

// --export-only / --shard: the same comparison against rank 0's (read-only) store.
void check_source_for_export(const formats::RankStore& store,
                             const formats::SourceIdentity& current, const SourceDigests* verified);

// Before the export: the source must still be as the run found it at its start.
void check_source_unchanged_since_start(const formats::CheckpointDir& source,
                                        const formats::SourceIdentity& at_start);

// Background hashing of this rank's share (files i % world == rank) of the files the store has
// no digest for; digests are noted into the store (recorded with its next manifest write; the
// store must outlive the hasher). Returns null when there is nothing to hash.
std::unique_ptr<formats::SourceHasher> start_source_hasher(const formats::CheckpointDir& source,
                                                           formats::RankStore& store, int rank,
                                                           int world_size);

// Collective, after every rank's reads and copies of the run (issue 19: no second pass over the
// source): the tensor digests that each rank's whole-tensor reads noted
// (CheckpointDir::digest_whole_reads) are pooled over the ranks, and every file whose tensors
// are then all known gets its content digest (tensor-list kind) noted into `store` and
// flushed. With `hash_missing` (a run that read every layer itself), each rank also hashes the
// tensors that nothing read in its share of the files (i % world == rank; in practice the
// tensors outside the layers) and the non-safetensors files, so every digest is known.
// Files the store already has a digest for are left as recorded.
void record_source_digests_from_reads(const formats::CheckpointDir& source,
                                      formats::RankStore& store, bool hash_missing,
                                      dist::Communicator& comm);

// Not collective (a run that stops): notes into `store` the digest of every shard whose tensors
// this rank's own reads all covered (record_source_digests_from_reads pools them otherwise).
void note_source_digests_read_here(const formats::CheckpointDir& source,
                                   formats::RankStore& store) noexcept;

// store.flush_source_digests(), a failure only logged (a run that is stopping keeps its error).
void flush_source_digests_noexcept(formats::RankStore& store) noexcept;

}  // namespace qf::pipeline
