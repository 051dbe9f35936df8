// How `quantforge status` shows a RunStatus: a short text for people, or one JSON document
// (fields documented in README "Operating a run"; names are stable). Owns only the rendering.
#pragma once
#include <nlohmann/json.hpp>
#include <ostream>

#include "status/run_status.hpp"

namespace qf::pipeline {

// format "quantforge.status", format_version 1.
nlohmann::json status_to_json(const RunStatus& status);
void print_status_text(const RunStatus& status, std::ostream& out);

}  // namespace qf::pipeline
