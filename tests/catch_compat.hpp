// Catch2 v2 (Debian 12) and v3 (the GPU machine) behind one include.
// Tests include only this header; catch_main*.cpp own the Session.
#pragma once
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define QF_CATCH_V3 1
#else
#include <catch2/catch.hpp>
#endif

// v3 moved Approx into Catch:: and matchers into Catch::Matchers (both present in v2 too).
using Catch::Approx;
