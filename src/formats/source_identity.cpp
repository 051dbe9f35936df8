// Source file identity: stat, compare, (de)serialise, hash in the background (see
// source_identity.hpp).
#include "formats/source_identity.hpp"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/strings.hpp"
#include "formats/checksum.hpp"
#include "formats/posix_file.hpp"
#include "formats/shard_digest.hpp"

namespace qf::formats {
namespace {

using nlohmann::json;

int64_t ns_of(const struct timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }

// "2026-12-05T14:01:02.123456789Z"
std::string time_text(int64_t ns) {
  const time_t seconds = time_t(ns / 1000000000);
  struct tm utc {};
  ::gmtime_r(&seconds, &utc);
  char text[64];
  const size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof(text) - n, ".%09lldZ", static_cast<long long>(ns % 1000000000));
  return text;
}

std::string describe_change(const SourceFileIdentity& a, const SourceFileIdentity& b) {
  std::vector<std::string> parts;
  if (a.n_bytes != b.n_bytes) {
    parts.push_back(str_cat("size ", a.n_bytes, " -> ", b.n_bytes, " bytes"));
  }
  if (a.mtime_ns != b.mtime_ns) {
    parts.push_back("modified (mtime " + time_text(a.mtime_ns) + " -> " + time_text(b.mtime_ns) +
                    ")");
  }
  if (a.ctime_ns != b.ctime_ns && a.mtime_ns == b.mtime_ns) {
    parts.push_back("changed with its mtime kept or restored (ctime " + time_text(a.ctime_ns) +
                    " -> " + time_text(b.ctime_ns) + ")");
  }
  if (a.inode != b.inode) {
    parts.push_back(str_cat("replaced by another file (inode ", a.inode, " -> ", b.inode, ")"));
  }
  std::string line;
  for (const auto& part : parts) line += (line.empty() ? "" : ", ") + part;
  return line;
}

// Linux: this thread's I/O at idle priority (ioprio_set(IOPRIO_WHO_PROCESS, tid, IDLE)); a hint.
void lower_io_priority() {
#ifdef SYS_ioprio_set
  constexpr int kWhoProcess = 1, kClassIdle = 3, kClassShift = 13;
  (void)::syscall(SYS_ioprio_set, kWhoProcess, 0, kClassIdle << kClassShift);
#endif
}

bool is_tensor_list(const std::string& digest) {
  return digest.compare(0, std::string(kTensorListDigest).size(), kTensorListDigest) == 0;
}

}  // namespace

std::string tensor_list_digest_text(uint64_t digest) {
  return kTensorListDigest + checksum_hex(digest);
}

json source_header_digests(const CheckpointDir& source) {
  json files = json::array();
  for (const auto& file : source.shard_files()) {
    const auto& shard = source.shard(file);
    std::vector<uint8_t> header(shard.data_offset());
    FileDescriptor fd = open_for_read(shard.path());
    pread_full(fd, header.data(), header.size(), 0);
    files.push_back({{"name", file},
                     {"n_bytes", shard.file_size()},
                     {"header_xxh64", checksum_hex(checksum64(header.data(), header.size()))}});
  }
  return files;
}

std::string source_config_xxh64(const CheckpointDir& source) {
  const std::string config = source.read_json("config.json").dump();
  return checksum_hex(checksum64(config.data(), config.size()));
}

SourceIdentity stat_source_files(const std::string& dir, const std::vector<std::string>& names) {
  SourceIdentity out;
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    struct stat st {};
    const std::string problem = not_a_regular_file(path);
    QF_CHECK(problem.empty() && ::stat(path.c_str(), &st) == 0, "source file", path, problem);
    out.push_back({name, uint64_t(st.st_size), ns_of(st.st_mtim), ns_of(st.st_ctim),
                   uint64_t(st.st_ino), ""});
  }
  std::sort(out.begin(), out.end(), [](const SourceFileIdentity& a, const SourceFileIdentity& b) {
    return a.name < b.name;
  });
  return out;
}

json source_identity_to_json(const SourceIdentity& identity) {
  json files = json::array();
  for (const auto& f : identity) {
    json entry = {{"name", f.name},
                  {"n_bytes", f.n_bytes},
                  {"mtime_ns", f.mtime_ns},
                  {"ctime_ns", f.ctime_ns},
                  {"inode", f.inode}};
    if (!f.xxh64.empty()) set_source_digest_json(entry, f.xxh64);
    files.push_back(entry);
  }
  return {{"files", files}};
}

SourceIdentity source_identity_from_json(const json& document, const std::string& where) {
  QF_CHECK(document.is_object() && document.contains("files") && document["files"].is_array(),
           where + ":", "source identity must be an object with a \"files\" array");
  SourceIdentity out;
  for (const json& entry : document["files"]) {
    try {
      SourceFileIdentity f;
      f.name = entry.at("name").get<std::string>();
      f.n_bytes = entry.at("n_bytes").get<uint64_t>();
      f.mtime_ns = entry.at("mtime_ns").get<int64_t>();
      f.ctime_ns = entry.at("ctime_ns").get<int64_t>();
      f.inode = entry.at("inode").get<uint64_t>();
      if (entry.contains("xxh64")) f.xxh64 = entry["xxh64"].get<std::string>();
      if (entry.contains("tensors_xxh64")) {
        f.xxh64 = kTensorListDigest + entry["tensors_xxh64"].get<std::string>();
      }
      out.push_back(std::move(f));
    } catch (const json::exception& e) {
      QF_FAIL(where + ":", "malformed source identity entry", entry.dump(), ":", e.what());
    }
  }
  std::sort(out.begin(), out.end(), [](const SourceFileIdentity& a, const SourceFileIdentity& b) {
    return a.name < b.name;
  });
  return out;
}

std::vector<std::string> changed_source_files(const SourceIdentity& recorded,
                                              const SourceIdentity& current) {
  std::map<std::string, const SourceFileIdentity*> now;
  for (const auto& f : current) now[f.name] = &f;
  std::vector<std::string> lines;
  for (const auto& f : recorded) {
    const auto it = now.find(f.name);
    if (it == now.end()) {
      lines.push_back(f.name + ": gone (the run used it)");
      continue;
    }
    const std::string change = describe_change(f, *it->second);
    if (!change.empty()) lines.push_back(f.name + ": " + change);
    now.erase(it);
  }
  for (const auto& [name, f] : now) lines.push_back(name + ": new (the run did not have it)");
  return lines;
}

void set_source_digest_json(json& entry, const std::string& digest) {
  entry.erase("xxh64");
  entry.erase("tensors_xxh64");
  if (is_tensor_list(digest)) {
    entry["tensors_xxh64"] = digest.substr(std::string(kTensorListDigest).size());
  } else {
    entry["xxh64"] = digest;
  }
}

std::string source_file_digest(const std::string& path, const std::string& like,
                               const std::atomic<bool>* stop) {
  const bool tensor_list = like.empty() ? ends_with(path, ".safetensors") : is_tensor_list(like);
  uint64_t digest = 0;
  if (tensor_list) {
    return shard_digest_of_file(path, stop, &digest) ? tensor_list_digest_text(digest) : "";
  }
  const FileDescriptor fd = open_for_read(path);
  return checksum_range(fd, 0, file_n_bytes(fd), stop, &digest) ? checksum_hex(digest) : "";
}

// ---- SourceHasher --------------------------------------------------------------------------

SourceHasher::SourceHasher(std::vector<std::string> names, std::vector<std::string> paths,
                           OnDigest on_digest)
    : names_(std::move(names)), paths_(std::move(paths)), on_digest_(std::move(on_digest)) {
  QF_CHECK(names_.size() == paths_.size(), "SourceHasher: names and paths differ in count");
  worker_ = std::thread([this] { run(); });
}

SourceHasher::~SourceHasher() {
  stopping_ = true;
  if (worker_.joinable()) worker_.join();
}

void SourceHasher::run() {
  lower_io_priority();
  for (size_t i = 0; i < names_.size() && !stopping_; ++i) {
    try {
      const std::string digest = source_file_digest(paths_[i], "", &stopping_);
      if (!digest.empty()) on_digest_(names_[i], digest);
    } catch (const std::exception& e) {
      log_warn("source content digest of ", paths_[i], " not recorded: ", e.what());
    }
  }
}

void SourceHasher::wait() {
  if (worker_.joinable()) worker_.join();
}

}  // namespace qf::formats
