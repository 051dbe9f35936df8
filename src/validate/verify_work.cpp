// verify_work_stores (see verify_work.hpp).
#include "validate/verify_work.hpp"

#include "core/check.hpp"
#include "formats/rank_store.hpp"

namespace qf::pipeline {

WorkCheck verify_work_stores(const std::string& work_dir) {
  WorkCheck out;
  try {
    out.world_size =
        formats::RankStore::open(work_dir, 0, formats::StoreVerify::kSizes).world_size();
  } catch (const Error& e) {
    out.problems.push_back(e.message());
    return out;
  }
  for (int rank = 0; rank < out.world_size; ++rank) {
    try {
      const auto store = formats::RankStore::open(work_dir, rank, formats::StoreVerify::kSizes);
      for (auto& line : store.verify_files()) out.problems.push_back(std::move(line));
      out.n_files += int(store.files().size());
    } catch (const Error& e) {
      out.problems.push_back(e.message());
    }
  }
  return out;
}

}  // namespace qf::pipeline
