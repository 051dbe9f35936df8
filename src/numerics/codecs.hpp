// Umbrella include for the scalar codecs (host and device). Owns no code of its own.
#pragma once
#include "numerics/bf16.hpp"
#include "numerics/block_dequant.hpp"
#include "numerics/e2m1.hpp"
#include "numerics/e4m3.hpp"
#include "numerics/e8m0.hpp"
#include "numerics/host_device.hpp"
