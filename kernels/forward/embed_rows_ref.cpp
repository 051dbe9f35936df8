// CPU reference of embed_rows.cuh: one numerics::bf16_to_float per element, copied `copies` times.
#include "core/check.hpp"
#include "kernels/forward/embed_rows.cuh"
#include "numerics/bf16.hpp"

namespace qf::kernels {

void embed_rows_ref(const EmbedRowsParams& p) {
  QF_CHECK(p.vocab >= 0 && p.dim >= 0 && p.n_tokens >= 0 && p.copies >= 1, "embed_rows shape",
           p.vocab, "x", p.dim, ",", p.n_tokens, "tokens x", p.copies);
  if (p.n_tokens == 0 || p.dim == 0) return;
  QF_CHECK(p.table_bf16 && p.token_ids && p.out, "embed_rows needs table, ids and out");
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const int64_t id = p.token_ids[t];
    QF_CHECK(id >= 0 && id < p.vocab, "embed_rows: token id", id, "outside the vocabulary of",
             p.vocab);
    for (int c = 0; c < p.copies; ++c) {
      float* row = p.out + (t * p.copies + c) * p.dim;
      for (int64_t i = 0; i < p.dim; ++i)
        row[i] = numerics::bf16_to_float(p.table_bf16[id * p.dim + i]);
    }
  }
}

}  // namespace qf::kernels
