// What a quantize run checks before it creates anything (issue 18): that its paths do not
// overlap (source, work stores, output and everything the run writes beside it), and the
// calibration inputs it will use (calibration file, amax file) loaded and validated up front.
// Owns: those rules and their messages. Does not own the source checkpoint's own checks
// (formats, model), the resume rules (rank store) or calibration itself.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "calibrate/calibration_data.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

struct QuantizeOptions;

// Throws qf::Error naming both paths and why, when: --out (or what the run writes beside it:
// OUT.partial, OUT.partial.lock, the quantization report) is --in or inside it, or --in inside
// one of them; --work is --in or inside it, or is / is inside any path the run writes; --out
// lies inside a rank directory of --work; --calib or --amax-file is a path the run writes.
// Paths are compared resolved (symlinks, "..", trailing slashes, bind mounts).
void check_quantize_paths(const QuantizeOptions& options);

// The calibration inputs, loaded once and validated before any file is created.
struct CalibrationInputs {
  std::optional<CalibrationSet> set;  // the token set (synthetic or --calib)
  std::map<std::string, float> amax;  // --amax-file
};

// Loads what the run will calibrate from (nothing for --export-only): the --calib file against
// the config's vocabulary, or the synthetic set; or the --amax-file, whose keys must name
// modules of this checkpoint (check_amax_modules). Throws qf::Error naming the file.
CalibrationInputs load_calibration_inputs(const QuantizePlan& plan, const QuantizeOptions& options);

// An --amax-file's keys against the checkpoint: a key that is no module of it (no `<key>.weight`
// source tensor: a typo, another model) is an error listing such keys; a file that names none of
// the recipe's NVFP4 targets is an error; keys of modules the recipe does not quantize are
// ignored with a warning (count and the first few).
void check_amax_modules(const QuantizePlan& plan, const std::map<std::string, float>& amax,
                        const std::string& path);

// The work directory can be created or used: each existing component is a directory (not a
// file), and the deepest existing one is writable. Creates nothing.
void check_work_dir_usable(const std::string& work_dir);

}  // namespace qf::pipeline
