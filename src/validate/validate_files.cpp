// validate: whole files. Non-shard source files (tokenizer, inference/, ...) copied byte for
// byte, and the optional integrity manifest quantforge_checksums.json ({file: xxh64 hex}).
// Does not read tensors or parse configs.
#include <filesystem>
#include <set>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"
#include "formats/shard_digest.hpp"
#include "formats/shard_index.hpp"
#include "validate/validate_context.hpp"

namespace qf::pipeline::validate_detail {

void check_other_files(Context& ctx) {
  auto& check = ctx.check(kCheckOtherFiles);
  std::vector<std::string> files;
  for (const auto& file : ctx.source.other_files()) {
    // Rewritten by the export (config.json, hf_quant_config.json) or its own (checksums).
    if (file == "config.json" || file == "hf_quant_config.json" || file == kChecksumsFileName) {
      continue;
    }
    files.push_back(file);
  }
  parallel_for(
      files.size(), ctx.options.n_threads,
      [&](size_t i) {
        const std::string out_path = ctx.out.dir + "/" + files[i];
        std::error_code error;
        if (!std::filesystem::is_regular_file(out_path, error)) {
          check.fail("source file", files[i], "is missing from the output");
          return;
        }
        const auto a = formats::checksum_file(ctx.source.dir() + "/" + files[i]);
        const auto b = formats::checksum_file(out_path);
        if (a.n_bytes == b.n_bytes && a.digest == b.digest) {
          check.pass();
        } else {
          check.fail("file", files[i], "differs from the source:", b.n_bytes, "bytes xxh64",
                     formats::checksum_hex(b.digest), "vs source", a.n_bytes, "bytes",
                     formats::checksum_hex(a.digest));
        }
      },
      [&](size_t i, const std::string& message) {
        check.fail("file", files[i], "could not be compared:", message);
      });
}

void check_extra_files(Context& ctx) {
  // Issue 18 defect 12: a file the export does not write (a stray copy, a store, an editor's
  // backup) fails, named. Shard files are the index and inventory checks' business.
  auto& check = ctx.check(kCheckOtherFiles);
  std::set<std::string> expected = {"config.json", "hf_quant_config.json", kChecksumsFileName,
                                    formats::kShardIndexFileName};
  for (const auto& file : ctx.source.other_files()) expected.insert(file);
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path root = fs::path(ctx.out.dir).lexically_normal();
  fs::recursive_directory_iterator it(root, error), end;
  if (error) return;  // the inventory reports an unreadable OUT
  for (; it != end; it.increment(error)) {
    if (error) {
      check.fail("cannot list", ctx.out.dir + ":", error.message());
      return;
    }
    const std::string base = it->path().filename().string();
    if (it->is_directory(error)) {
      if (base == ".cache" || base == "__pycache__") it.disable_recursion_pending();
      continue;
    }
    const std::string relative = it->path().lexically_relative(root).generic_string();
    if (ends_with(relative, ".safetensors") || expected.count(relative)) continue;
    check.fail("file", relative,
               "is in the output but is no part of the export (not a source "
               "file, not written by quantize)");
  }
}

void check_checksums(Context& ctx) {
  auto& check = ctx.check(kCheckChecksums);
  const std::string path = ctx.out.dir + "/" + kChecksumsFileName;
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    check.set_note(std::string(kChecksumsFileName) + " absent: integrity not verified");
    return;
  }
  formats::ChecksumsManifest manifest;
  try {
    manifest = formats::parse_checksums_manifest(formats::read_json_file(path), path);
  } catch (const Error& e) {
    check.fail(kChecksumsFileName, "unreadable:", e.message());
    return;
  }
  for (const auto& problem : manifest.problems) check.fail(kChecksumsFileName, problem);
  const std::vector<std::pair<std::string, uint64_t>> entries(manifest.files.begin(),
                                                              manifest.files.end());
  for (const auto& [file, reader] : ctx.out.shards) {
    if (!manifest.files.count(file))
      check.fail("output shard", file, "has no checksum in", kChecksumsFileName);
  }
  parallel_for(
      entries.size(), ctx.options.n_threads,
      [&](size_t i) {
        const auto& [file, digest] = entries[i];
        const uint64_t actual =
            formats::manifest_digest_of_file(manifest, ctx.out.dir + "/" + file);
        if (actual == digest) {
          check.pass();
        } else {
          check.fail(file + ": xxh64", formats::checksum_hex(actual), "but", kChecksumsFileName,
                     "says", formats::checksum_hex(digest));
        }
      },
      [&](size_t i, const std::string& message) {
        check.fail(entries[i].first + ": cannot be checksummed:", message);
      });
}

}  // namespace qf::pipeline::validate_detail
