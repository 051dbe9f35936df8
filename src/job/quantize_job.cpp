// run_quantize: the phases of the main job (see quantize_job.hpp).
#include "job/quantize_job.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "calibrate/hessian_recorder.hpp"
#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/progress.hpp"
#include "core/progress_stream.hpp"
#include "core/stop_signal.hpp"
#include "dist/collective_step.hpp"
#include "export/export.hpp"
#include "formats/checksum.hpp"
#include "formats/rank_store.hpp"
#include "formats/source_derived.hpp"
#include "formats/source_identity.hpp"
#include "formats/staged_output.hpp"
#include "formats/store_committer.hpp"
#include "job/calibration_source.hpp"
#include "job/calibration_summary.hpp"
#include "job/job_progress.hpp"
#include "job/output_provenance.hpp"
#include "job/output_step.hpp"
#include "job/quantize_checks.hpp"
#include "job/quantize_report_section.hpp"
#include "job/quantize_stop_message.hpp"
#include "job/source_check.hpp"
#include "model/forward_flops.hpp"
#include "quantize/input_scales.hpp"
#include "quantize/quantize_weights.hpp"
#include "report/quantization_report.hpp"
#include "report/quantization_report_html.hpp"

namespace qf::pipeline {

// What makes two runs the same run: resuming with any of these changed is refused (the store
// lists every difference). The rank count is checked by the store itself.
nlohmann::json quantize_provenance(const QuantizeOptions& options,
                                   const formats::CheckpointDir& source) {
  nlohmann::json calibration;
  if (!options.amax_file.empty()) {
    const auto sum = formats::checksum_file(options.amax_file);
    calibration = {{"amax_file_xxh64", formats::checksum_hex(sum.digest)}};
  } else {
    calibration = {
        {"samples", options.samples}, {"seq_len", options.seq_len}, {"seed", options.seed}};
    // Only when set, so that stores of runs without the option keep their provenance.
    if (options.cpu_bf16_linear_inputs) calibration["cpu_linear_inputs"] = "bf16";
    // The CUDA forward's products differ with it (the CPU forward is FP32 either way). Always
    // present for cuda: stores of earlier versions (BF16 inputs, no key) are not resumed by a
    // run that computes otherwise.
    if (options.backend == dist::ComputeBackend::kCuda) {
      calibration["cuda_linear_inputs"] = options.cuda_bf16_linear_inputs ? "bf16" : "fp32";
    }
    if (!options.calib_path.empty()) {
      calibration["calib_xxh64"] =
          formats::checksum_hex(formats::checksum_file(options.calib_path).digest);
    }
  }
  // The backend is part of the run: the CUDA forward's amax differ from the CPU reference's in
  // the last bits, and a resume recomputes and compares records bit for bit. For the same
  // reason the CUDA batch size is too (cuBLAS picks kernels by shape).
  nlohmann::json run_options = {{"recipe", recipes().name(options.recipe)},
                                {"kv_cache", kv_caches().name(options.kv)},
                                {"backend", dist::backend_name(options.backend)}};
  if (options.backend == dist::ComputeBackend::kCuda && options.amax_file.empty()) {
    run_options["calib_batch"] = options.calib_batch;
  }
  // Not here: the communicator (--comm mpi|nccl) moves the same bytes and MAX is exact, so
  // both give identical records; a run may be resumed with the other.
  // Only when not max, so that stores of runs before the option keep their provenance.
  if (options.act_scale.needs_histogram()) {
    run_options["act_scale"] = act_scale_name(options.act_scale);
  }
  // The expert weights' arithmetic (lossless cast or requantization): only when not the default
  // cast, for the same reason. A resume with the other value is refused like any option here.
  if (options.expert_weights != ExpertWeights::kCast) {
    run_options["expert_weights"] = expert_weights_modes().name(options.expert_weights);
  }
  // The weights' scale method: only when not max, for the same reason (a hessian stage of
  // another method's run, or codes of another method, must not be mixed into this one).
  if (options.weight_scale != WeightScale::kMax) {
    run_options["weight_scale"] = weight_scale_methods().name(options.weight_scale);
  }
  return {{"tool", std::string("quantforge ") + QF_VERSION},
          {"options", run_options},
          {"calibration", calibration},
          {"config_xxh64", formats::source_config_xxh64(source)},
          {"source_files", formats::source_header_digests(source)}};
}

std::vector<std::string> export_only_provenance_differences(const nlohmann::json& stored,
                                                            const nlohmann::json& current) {
  // Exporting computes nothing: the backend that filled the stores does not matter.
  auto without_backend = [](nlohmann::json p) {
    if (p.contains("options") && p["options"].is_object()) {
      p["options"].erase("backend");
      p["options"].erase("calib_batch");
    }
    return p;
  };
  return formats::RankStore::compare_provenance(without_backend(stored), without_backend(current));
}

namespace {

// --export-only: rank 0's store must belong to this run (computing nothing, the backend that
// filled it does not matter); the calibration records of every layer. Returns the store's rank
// count (plan is rebuilt for it: who owned what is the stores' business).
int open_stores_for_export(const QuantizeOptions& options, const nlohmann::json& prov,
                           const formats::CheckpointDir& source, QuantizePlan& plan,
                           std::map<int, formats::LayerRecord>& calib,
                           const formats::SourceIdentity& current, const SourceDigests* verified,
                           std::string& store_digest) {
  auto store = formats::RankStore::open(options.work_dir, 0, formats::StoreVerify::kSizes);
  const auto diff = export_only_provenance_differences(store.provenance(), prov);
  QF_CHECK(diff.empty(), "--export-only: the work store in", options.work_dir,
           "belongs to another run:", diff.empty() ? "" : diff.front());
  check_source_for_export(store, current, verified);
  store_digest = store.provenance_xxh64();
  // Defect 8: OUT must have come from this store; checked before anything touches OUT.
  if (!options.shard.empty()) {
    check_store_matches_output(options.out_dir, options.shard, options.work_dir, store_digest);
  }
  const int store_world_size = store.world_size();
  if (store_world_size != plan.ownership.world_size()) {
    plan = build_quantize_plan(source, options.recipe, store_world_size, options.expert_weights);
    plan.weight_scale = options.weight_scale;
  }
  for (int l = 0; l < plan.config.num_hidden_layers; ++l) {
    QF_CHECK(store.has_layer(l, formats::kStageCalib), "--export-only: layer", l,
             "has no calibration record in", store.dir(), "; run quantize --resume first");
    calib[l] = store.read_layer(l, formats::kStageCalib);
  }
  return store_world_size;
}

// Without --resume an existing store with committed layers is refused (a store with none holds
// nothing to lose: RankStore::create starts it afresh).
void check_store_startable(const QuantizeOptions& options, int rank) {
  const int n_committed = formats::RankStore::n_committed(options.work_dir, rank);
  QF_CHECK(n_committed <= 0 || options.resume, "work store",
           formats::RankStore::rank_dir(options.work_dir, rank), "exists with", n_committed,
           "committed layer file(s); pass --resume to continue it, or use a new --work directory");
}

// Option combinations (the command line checked each value's range).
void check_quantize_options(const QuantizeOptions& options) {
  QF_CHECK(!options.act_scale.needs_histogram() || options.amax_file.empty(), "--act-scale",
           act_scale_name(options.act_scale),
           "needs activation histograms, which an --amax-file does not have");
  QF_CHECK(!weight_scale_needs_hessian(options.weight_scale) || options.export_only ||
               options.amax_file.empty(),
           "--weight-scale", weight_scale_methods().name(options.weight_scale),
           "needs the X^T X of the calibration inputs, which an --amax-file does not have");
  // No CUDA kernel for the searches or GPTQ yet: refused rather than run on the side.
  QF_CHECK(options.weight_scale == WeightScale::kMax || options.export_only ||
               options.backend == dist::ComputeBackend::kCpu,
           "--weight-scale", weight_scale_methods().name(options.weight_scale),
           "is implemented by the cpu backend only (no CUDA kernel yet): use --backend cpu, or",
           "--weight-scale max with the cuda backend");
  QF_CHECK(!options.export_only || !options.resume, "give --resume or --export-only, not both");
  QF_CHECK(!options.cuda_bf16_linear_inputs || options.backend == dist::ComputeBackend::kCuda,
           "--cuda-bf16-inputs is an option of the cuda backend; this run's backend is",
           dist::backend_name(options.backend));
  QF_CHECK(options.amax_file.empty() || options.calib_path.empty(),
           "give --calib or --amax-file, not both");
}

// Rank 0's "progress" event after each calibrated layer (the stream is off on other ranks).
void emit_calibration_progress(const CalibrationLayerDone& done) {
  if (!progress_stream::active()) return;
  nlohmann::json fields = {{"phase", "calibration"},
                           {"label", "calibration"},
                           {"layer", done.layer},
                           {"done", done.layer + 1},
                           {"total", done.n_layers},
                           {"unit", "layers"},
                           {"rate", done.layers_per_second},
                           {"eta_seconds", done.eta_seconds},
                           {"tokens_per_second", done.tokens_per_second},
                           {"layer_seconds", done.layer_seconds},
                           {"recomputed", done.recomputed}};
  progress_stream::emit("progress", fields);
}

// The NVFP4 tensors the source already holds (a lossless cast's packed codes and block scales)
// are committed as derived tensors: the store keeps their rule and XXH64, not their bytes
// (formats/source_derived).
// `*n_derived` counts the bytes left in the source; it outlives the committer.
void commit_source_derived(formats::StoreCommitter& store, const QuantizePlan& plan,
                           const formats::CheckpointDir& source, uint64_t* n_derived) {
  auto candidates = source_derivable_outputs(plan);
  if (candidates.empty()) return;
  store.set_before_commit([candidates = std::move(candidates), &source, n_derived](
                              formats::LayerRecord& record, const std::string& stage) {
    if (stage == formats::kStageQuant) {
      *n_derived += formats::mark_source_derived(record, source, candidates);
    }
  });
}

// Each NVFP4 record the committer commits goes on into the staged output, from memory.
void stream_committed_quant_records(formats::StoreCommitter& store, OutputStreamer& streamer) {
  store.set_after_commit([&streamer](const formats::LayerRecord& record, const std::string& stage) {
    if (stage == formats::kStageQuant) streamer.write_layer(record);
  });
}

// Calibration then quantization of every regular layer; committed layers are skipped on
// resume. Records are committed in the background (StoreCommitter: quantizing layer l+1 overlaps
// writing layer l) and all drained before this returns; a failed commit surfaces in the next
// submit or the drain, on its rank, inside the caller's collective step. With `streamer`, each
// committed NVFP4 record also goes into the staged output (the streamed export).
QuantizeReport fill_store(const QuantizePlan& plan, const formats::CheckpointDir& source,
                          const QuantizeOptions& options, CalibrationInputs inputs,
                          formats::RankStore& rank_store, dist::Communicator& comm,
                          JobProgress& job, OutputStreamer* streamer) {
  QuantizeReport report;
  const int n_layers = plan.config.num_hidden_layers;
  formats::StoreCommitter store(rank_store);
  commit_source_derived(store, plan, source, &report.store_bytes_derived);
  if (streamer) stream_committed_quant_records(store, *streamer);
  auto phase_start = std::chrono::steady_clock::now();
  const IoCounters io_calib_start = read_io_counters();
  job.phase("calibration");
  auto calibration = make_calibration_source(plan, source, options, std::move(inputs), comm, store);
  // After each layer's collective step: every rank's finished commits reach rank 0's stream.
  calibration->set_layer_hook([&](const CalibrationLayerDone& done) {
    job.collect(store);
    job.exchange();
    emit_calibration_progress(done);
  });
  calibration->run(store);  // queues calib records of every layer not yet committed
  const CalibrationCost cost = calibration->cost();
  report.calib_seconds = seconds_since(phase_start);
  report.calib_forward_seconds = cost.forward_seconds;
  report.calib_tokens = cost.n_tokens;
  if (n_layers > 0) {
    report.calib_flops = double(cost.n_tokens) / n_layers *
                         model::model_flops_per_token(plan.config, options.seq_len);
  }
  report.bytes_read = cost.bytes_read;
  report.peak_device_bytes = cost.peak_device_bytes;
  report.n_targets += cost.fused.n_targets;
  report.n_blocks_lossless += cost.fused.n_blocks_lossless;
  report.n_blocks_fallback += cost.fused.n_blocks_fallback;
  report.n_blocks_moved += cost.fused.n_blocks_moved;
  phase_start = std::chrono::steady_clock::now();
  const IoCounters io_quant_start = read_io_counters();
  report.io_calib = io_since(io_calib_start, io_quant_start);
  QF_NVTX_RANGE("quantize job: quantize");  // the layer loop and the last store commits
  job.phase("quantization");
  ProgressMeter progress("quantize", uint64_t(n_layers), "layers");
  gpu::Nvfp4OpsPool ops(options.backend);
  for (int layer = 0; layer < n_layers; ++layer) {
    check_stop_requested("between quantized layers");
    if (!store.has_layer(layer, formats::kStageQuant)) {
      QuantizeStats stats;
      // gptq | hessian: this rank's X^T X of the layer, committed by the calibration.
      formats::LayerRecord hessians;
      if (weight_scale_needs_hessian(plan.weight_scale)) {
        hessians = store.read_layer(layer, kStageHessian);
      }
      auto record =
          quantize_owned_targets(plan, source, layer, comm.rank(), &stats, ops, &hessians);
      record.attrs["stage"] = "nvfp4 weights";
      store.submit(std::move(record), formats::kStageQuant);
      report.n_targets += stats.n_targets;
      report.n_blocks_lossless += stats.n_blocks_lossless;
      report.n_blocks_fallback += stats.n_blocks_fallback;
      report.n_blocks_moved += stats.n_blocks_moved;
      report.bytes_read += stats.bytes_read;
      log_debug("[r", comm.rank(), "] layer ", layer, ": ", stats.n_targets, " targets, ",
                stats.n_blocks_lossless, " lossless / ", stats.n_blocks_fallback,
                " fallback blocks");
    }
    progress.advance(1);
    // No collective per layer here: rank 0 reports its own commits as they finish, the other
    // ranks' arrive with the exchange after this phase's step.
    job.collect(store);
    job.emit_own();
  }
  store.drain();  // the last layers' commits (the CUDA calibration commits every quant record)
  job.collect(store);
  job.emit_own();
  progress.finish();
  report.quant_seconds = seconds_since(phase_start);
  report.io_quant = io_since(io_quant_start, read_io_counters());
  const formats::StoreCommitter::Stats commits = store.stats();
  report.store_commit_seconds = commits.write_seconds;
  report.store_commit_wait_seconds = commits.wait_seconds;
  report.store_bytes_written = commits.n_bytes;
  return report;
}

// fill_store, with the source's content digests taken care of (issue 19). A run that starts
// with no committed layer reads every layer itself, so its own reads give the digests
// (record_source_digests_from_reads, after the phase; *reads_cover_source is set). A resume
// hashes its share of the files still lacking one on a background thread, recorded as they
// finish (also when the run stops: a later resume can compare them).
QuantizeReport fill_store_hashing_source(const QuantizePlan& plan,
                                         const formats::CheckpointDir& source,
                                         const QuantizeOptions& options, CalibrationInputs inputs,
                                         formats::RankStore& store, dist::Communicator& comm,
                                         JobProgress& job, OutputStreamer* streamer,
                                         bool* reads_cover_source) {
  *reads_cover_source = store.committed_layers(formats::kStageCalib).empty() &&
                        store.committed_layers(formats::kStageQuant).empty();
  QuantizeReport report;
  {
    std::unique_ptr<formats::SourceHasher> hasher;
    if (!*reads_cover_source) {
      hasher = start_source_hasher(source, store, comm.rank(), comm.world_size());
    }
    try {
      report = fill_store(plan, source, options, std::move(inputs), store, comm, job, streamer);
    } catch (...) {
      hasher.reset();
      if (*reads_cover_source) note_source_digests_read_here(source, store);
      flush_source_digests_noexcept(store);
      throw;
    }
  }
  store.flush_source_digests();
  return report;
}

// Collective: sums the counts over ranks into report.totals; rank 0 writes
// <OUT>.quantization_report.{json,txt}. A new export drops an earlier report's eval section (it
// judged other bytes); a --shard rebuild (same bytes) keeps it.
void write_report(const QuantizeOptions& options, QuantizeReport& report, const QuantizePlan& plan,
                  const InputScales& scales, const std::map<int, formats::LayerRecord>& calib,
                  dist::Communicator& comm) {
  uint64_t counts[5] = {report.n_targets, report.n_blocks_lossless, report.n_blocks_fallback,
                        report.bytes_written, report.n_blocks_moved};
  comm.allreduce_counts(counts, 5, "quantization report counts");
  QuantizeReportTotals& totals = report.totals;
  totals.n_targets_planned = plan.targets.size();
  totals.n_targets = counts[0];
  totals.n_blocks_lossless = counts[1];
  totals.n_blocks_fallback = counts[2];
  totals.bytes_written = counts[3];
  totals.n_blocks_moved = counts[4];
  dist::run_on_root(comm, 0, "writing the quantization report", [&] {
    const std::string path = quantization_report_path(options.out_dir);
    const nlohmann::json previous = read_quantization_report(path);
    nlohmann::json doc = {{"format", kQuantizationReportFormat}};
    if (!options.shard.empty() && previous.contains("eval")) doc["eval"] = previous["eval"];
    doc["quantize"] = quantize_report_section(options, report, totals, scales.fallback_modules,
                                              comm.world_size(), previous);
    // For the HTML page's heat map and amax ranges (not among the golden report numbers).
    doc["quantize"]["calibration_summary"] = calibration_summary(calib);
    write_quantization_report(path, doc);
    log_info("quantize: report written to ", path, " (and ", quantization_report_text_path(path),
             ", ", quantization_report_html_path(path), ")");
  });
}

void log_quantize_start(const QuantizeOptions& options, const QuantizePlan& plan, int world_size) {
  log_info("quantize: ", plan.targets.size(), " NVFP4 targets (recipe ",
           recipes().name(options.recipe), ", expert weights ",
           expert_weights_modes().name(options.expert_weights), ", weight scales ",
           weight_scale_methods().name(options.weight_scale), "), ", plan.tensors.size(),
           " source tensors, ", world_size, " rank(s)");
}

// Collective, after fill_store on every rank: every rank's layers committed and its streamer's
// background copies done (before anyone exports), the source's content digests recorded from
// this run's reads, and the store closed (the export reads the stores).
void close_store_after_layers(const formats::CheckpointDir& source,
                              std::optional<formats::RankStore>& store, OutputStreamer* streamer,
                              bool reads_cover_source, dist::Communicator& comm, JobProgress& job) {
  dist::run_on_all_ranks(comm, "checking that every rank finished", [&] {
    if (streamer) streamer->finish_outside_layers();
  });
  job.exchange();  // the other ranks' last commits
  record_source_digests_from_reads(source, *store, reads_cover_source, comm);
  store.reset();
}

// The export: the whole checkpoint (streamed layers skipped), or one --shard.
ExportReport run_export(const QuantizeOptions& options, const QuantizePlan& plan,
                        const formats::CheckpointDir& source, const InputScales& scales,
                        int store_world_size, formats::StagedOutput* output,
                        OutputStreamer* streamer, dist::Communicator& comm) {
  const ExportOptions export_options{options.out_dir, options.work_dir, options.kv,
                                     store_world_size};
  if (!options.shard.empty()) {
    return export_one_shard(plan, source, scales, export_options, options.shard, comm);
  }
  return export_checkpoint(plan, source, scales, export_options, output, comm, streamer);
}

QuantizeReport run_quantize_phases(const QuantizeOptions& options, dist::Communicator& comm,
                                   QuantizePhase& phase, JobProgress& job,
                                   std::chrono::steady_clock::time_point start) {
  const IoCounters io_at_start = read_io_counters();
  std::unique_ptr<formats::CheckpointDir> source;
  QuantizePlan plan;
  nlohmann::json prov;
  CalibrationInputs inputs;
  formats::SourceIdentity source_at_start;  // every source file's stat (source_check.hpp)
  // Every input is checked before anything is created (issue 18 defect 10): a bad option, path,
  // source, calibration or amax file leaves no lock, store or output behind.
  dist::run_on_all_ranks(comm, "checking the inputs", [&] {
    check_quantize_options(options);
    check_quantize_paths(options);
    if (!options.export_only) check_work_dir_usable(options.work_dir);
    source = std::make_unique<formats::CheckpointDir>(options.in_dir);
    // A run that writes a store takes the source's content digests from its own reads.
    source->digest_whole_reads(!options.export_only && options.shard.empty());
    plan = build_quantize_plan(*source, options.recipe, comm.world_size(), options.expert_weights);
    plan.weight_scale = options.weight_scale;
    prov = quantize_provenance(options, *source);
    source_at_start = formats::stat_source_files(source->dir(), source_identity_files(*source));
    if (options.shard.empty()) formats::StagedOutput::check_final_dir(options.out_dir);
    inputs = load_calibration_inputs(plan, options);
    if (!options.export_only) check_store_startable(options, comm.rank());
  });
  log_quantize_start(options, plan, comm.world_size());
  phase = QuantizePhase::kStores;
  // A full run streams each layer's outputs into the staging as it is committed (issue 19);
  // --export-only and --shard write everything from the stores at the end.
  const bool stream_output = options.shard.empty() && !options.export_only;
  std::optional<formats::StagedOutput> output = claim_output(options, plan, stream_output, comm);
  std::unique_ptr<OutputStreamer> streamer;

  std::optional<SourceDigests> verified;  // --verify-source
  if (options.verify_source)
    verified = verify_source_against_stores(*source, options.work_dir, comm);

  QuantizeReport report;
  int store_world_size = comm.world_size();
  std::map<int, formats::LayerRecord> calib;
  std::optional<formats::RankStore> store;  // this rank's, writable (not --export-only)
  bool reads_cover_source = false;
  dist::run_on_all_ranks(comm, "opening the work store", [&] {
    const SourceDigests* verified_digests = verified ? &*verified : nullptr;
    if (options.export_only) {
      store_world_size =
          open_stores_for_export(options, prov, *source, plan, calib, source_at_start,
                                 verified_digests, report.store_provenance_xxh64);
      job.own_work_dir(plan.config.num_hidden_layers);
      return;
    }
    store.emplace(formats::RankStore::create(options.work_dir, comm.rank(), comm.world_size(), prov,
                                             formats::StoreVerify::kSizes));
    job.own_work_dir(plan.config.num_hidden_layers);  // rank 0 holds its store's lock now
    check_and_record_source(*store, source_at_start, verified_digests);
    if (stream_output) {
      streamer = std::make_unique<OutputStreamer>(
          plan, *source, formats::StagedOutput::staging_dir_for(options.out_dir), comm.rank());
    }
    report = fill_store_hashing_source(plan, *source, options, std::move(inputs), *store, comm, job,
                                       streamer.get(), &reads_cover_source);
    report.store_provenance_xxh64 = store->provenance_xxh64();
    for (int l = 0; l < plan.config.num_hidden_layers; ++l) {
      calib[l] = store->read_layer(l, formats::kStageCalib);
    }
  });
  if (store)
    close_store_after_layers(*source, store, streamer.get(), reads_cover_source, comm, job);

  const InputScales scales =
      input_scales_for_export(plan, *source, source_at_start, calib, options, comm);
  report.n_fallback_experts = scales.fallback_modules.size();
  phase = QuantizePhase::kExport;
  const auto export_start = std::chrono::steady_clock::now();
  const IoCounters io_export_start = read_io_counters();
  job.phase("export");
  report.bytes_written = run_export(options, plan, *source, scales, store_world_size,
                                    output ? &*output : nullptr, streamer.get(), comm)
                             .bytes_written;
  report.export_seconds = seconds_since(export_start);
  report.io_export = io_since(io_export_start, read_io_counters());
  report.io_total = io_since(io_at_start, read_io_counters());
  for (const auto& file : source_at_start) report.source_file_bytes += file.n_bytes;
  report.seconds = seconds_since(start);
  job.phase("report");
  write_report(options, report, plan, scales, calib, comm);
  if (output) output->release();  // --shard: the rebuilt OUT is free again
  return report;
}

}  // namespace

QuantizeReport run_quantize(const QuantizeOptions& options, dist::Communicator& comm) {
  QF_NVTX_RANGE("quantize job");
  const auto start = std::chrono::steady_clock::now();
  JobProgress job(options, comm);
  QuantizePhase phase = QuantizePhase::kChecks;
  try {
    QuantizeReport report = run_quantize_phases(options, comm, phase, job, start);
    job.finish(true, "", seconds_since(start));
    return report;
  } catch (const Interrupted& e) {
    job.finish(false, e.message(), seconds_since(start));
    throw Interrupted(e.signal(), stopped_message(options, phase, e), e.reported_here());
  } catch (const std::exception& e) {
    job.finish(false, e.what(), seconds_since(start));
    throw;
  }
}

}  // namespace qf::pipeline
