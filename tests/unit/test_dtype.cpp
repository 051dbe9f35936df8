// The dtype traits table: names round-trip, sizes match safetensors' rules.
#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/dtype.hpp"

using namespace qf;

TEST_CASE("every dtype name parses back to itself", "[dtype]") {
  for (const DType dtype : all_dtypes()) {
    DType parsed{};
    REQUIRE(parse_dtype(dtype_name(dtype), &parsed));
    CHECK(parsed == dtype);
  }
  DType parsed{};
  CHECK_FALSE(parse_dtype("F8_E4M3FN", &parsed));
  CHECK_FALSE(parse_dtype("bf16", &parsed));
}

TEST_CASE("byte counts follow bits per element", "[dtype]") {
  CHECK(dtype_n_bytes(DType::kBF16, 10) == 20);
  CHECK(dtype_n_bytes(DType::kF8E4M3, 7) == 7);
  CHECK(dtype_n_bytes(DType::kI64, 3) == 24);
  CHECK(dtype_n_bytes(DType::kF4, 8) == 4);
  CHECK_THROWS_AS(dtype_n_bytes(DType::kF4, 3), Error);
}
