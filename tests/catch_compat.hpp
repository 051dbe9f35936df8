// Catch2 v2 (Debian 12) and v3 (the GPU machine) behind one include.
// Tests include only this header; catch_main*.cpp own the Session.
#pragma once
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define QF_CATCH_V3 1
// v3 keeps Approx in namespace Catch; v2 already puts the class in the global namespace.
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
