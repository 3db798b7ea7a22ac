// summarize_step_profile and its table (benchmarks/step_profile.h).
#include "benchmarks/step_profile.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>

#include "core/error.h"

namespace dino::bench {

namespace {

using nlohmann::json;

// benchmarks/kernel_families.json: [[family, [keys]]], the first family one of whose keys the
// short name contains.
const json& families() {
  static const json f = json::parse(
#include "benchmarks/kernel_families.inc"
      )["families"];
  return f;
}

std::string family_of(const DeviceActivity& a, const std::string& short_name) {
  if (a.kind != DeviceActivity::Kind::kernel) return "copies, memsets";
  for (const json& f : families())
    for (const json& key : f[1])
      if (short_name.find(key.get<std::string>()) != std::string::npos) return f[0];
  return "other";
}

void erase_all(std::string& s, const std::string& what) {
  for (size_t i; (i = s.find(what)) != std::string::npos;) s.erase(i, what.size());
}

}  // namespace

std::string short_kernel_name(const std::string& demangled) {
  std::string s = demangled;
  if (s.rfind("void ", 0) == 0) s.erase(0, 5);
  // The parameter list: the parenthesis that closes the name, and its match.
  if (!s.empty() && s.back() == ')') {
    int depth = 0;
    for (size_t i = s.size(); i-- > 0;) {
      if (s[i] == ')') ++depth;
      if (s[i] == '(' && --depth == 0) {
        if (i > 0) s.erase(i);
        break;
      }
    }
  }
  erase_all(s, "dino::kernels::cuda::");
  erase_all(s, "(anonymous namespace)::");
  return s;
}

json summarize_step_profile(const std::vector<DeviceActivity>& activity, int steps) {
  DINO_CHECK(steps > 0, "[profile] steps must be positive, got ", steps);
  DINO_CHECK(!activity.empty(), "[profile] the trace holds no device activity");
  std::vector<const DeviceActivity*> order;
  for (const DeviceActivity& a : activity) {
    DINO_CHECK(a.end_ns >= a.start_ns, "[profile] ", a.name, " ends (", a.end_ns,
               " ns) before it starts (", a.start_ns, " ns)");
    order.push_back(&a);
  }
  std::stable_sort(
      order.begin(), order.end(),
      [](const DeviceActivity* a, const DeviceActivity* b) { return a->start_ns < b->start_ns; });

  // The busy time: the intervals merged where they overlap (concurrent streams, copies under
  // kernels); what lies between the merged intervals is idle.
  constexpr uint64_t kGapNs = 10000;
  uint64_t busy = 0, largest_gap = 0, run_start = order.front()->start_ns,
           run_end = order.front()->end_ns;
  int64_t long_gaps = 0;
  for (const DeviceActivity* a : order) {
    if (a->start_ns > run_end) {
      busy += run_end - run_start;
      const uint64_t gap = a->start_ns - run_end;
      largest_gap = std::max(largest_gap, gap);
      long_gaps += gap > kGapNs;
      run_start = a->start_ns;
    }
    run_end = std::max(run_end, a->end_ns);
  }
  busy += run_end - run_start;
  const uint64_t span = run_end - order.front()->start_ns;

  struct Total {
    int64_t calls = 0;
    uint64_t ns = 0;
    void add(uint64_t interval_ns) { ++calls, ns += interval_ns; }
  };
  struct Row {
    std::string family;
    DeviceActivity::Kind kind = DeviceActivity::Kind::kernel;
    Total total;
    uint64_t bytes = 0;
    int registers = 0;
    std::map<std::array<int, 6>, Total> configs;  // grid, block
  };
  std::map<std::string, Row> by_name;
  int64_t kernel_calls = 0;
  for (const DeviceActivity& a : activity) {
    const std::string name = short_kernel_name(a.name);
    Row& r = by_name[name];
    if (r.total.calls == 0) r.family = family_of(a, name), r.kind = a.kind;
    const uint64_t ns = a.end_ns - a.start_ns;
    r.total.add(ns);
    r.bytes += a.bytes;
    r.registers = std::max(r.registers, a.registers);
    if (a.kind == DeviceActivity::Kind::kernel) {
      r.configs[{a.grid[0], a.grid[1], a.grid[2], a.block[0], a.block[1], a.block[2]}].add(ns);
      ++kernel_calls;
    }
  }

  const double per_step = 1.0 / (1e6 * steps);  // ns over all steps -> ms per step
  const double busy_ms = double(busy) * per_step;
  auto pct_busy = [&](uint64_t ns) { return busy ? 100.0 * double(ns) / double(busy) : 0.0; };
  json kernels = json::array();
  std::map<std::string, Total> by_family;
  for (const auto& [name, r] : by_name) {
    json k{{"name", name},
           {"family", r.family},
           {"calls_per_step", double(r.total.calls) / steps},
           {"ms_per_step", double(r.total.ns) * per_step},
           {"pct_busy", pct_busy(r.total.ns)},
           {"us_per_call", double(r.total.ns) / 1e3 / double(r.total.calls)}};
    if (r.kind == DeviceActivity::Kind::kernel) {
      k["registers"] = r.registers;
      json configs = json::array();
      for (const auto& [c, l] : r.configs)
        configs.push_back({{"grid", {c[0], c[1], c[2]}},
                           {"block", {c[3], c[4], c[5]}},
                           {"calls_per_step", double(l.calls) / steps},
                           {"ms_per_step", double(l.ns) * per_step}});
      std::stable_sort(configs.begin(), configs.end(), [](const json& a, const json& b) {
        return a["ms_per_step"].get<double>() > b["ms_per_step"].get<double>();
      });
      k["launches"] = std::move(configs);
    } else {
      k["bytes_per_step"] = double(r.bytes) / steps;
    }
    kernels.push_back(std::move(k));
    Total& f = by_family[r.family];
    f.calls += r.total.calls;
    f.ns += r.total.ns;
  }
  std::stable_sort(kernels.begin(), kernels.end(), [](const json& a, const json& b) {
    return a["ms_per_step"].get<double>() > b["ms_per_step"].get<double>();
  });
  json fams = json::array();
  for (const auto& [name, f] : by_family)
    fams.push_back({{"family", name},
                    {"calls_per_step", double(f.calls) / steps},
                    {"ms_per_step", double(f.ns) * per_step},
                    {"pct_busy", pct_busy(f.ns)}});
  std::stable_sort(fams.begin(), fams.end(), [](const json& a, const json& b) {
    return a["ms_per_step"].get<double>() > b["ms_per_step"].get<double>();
  });
  const double span_ms = double(span) * per_step;
  return json{{"steps", steps},
              {"span_ms", span_ms},
              {"busy_ms", busy_ms},
              {"idle_ms", span_ms - busy_ms},
              {"idle_pct", span ? 100.0 * double(span - busy) / double(span) : 0.0},
              {"gaps_over_10us_per_step", double(long_gaps) / steps},
              {"largest_gap_us", double(largest_gap) / 1e3},
              {"kernels_per_step", double(kernel_calls) / steps},
              {"note",
               "per step; busy: the union of the device's intervals; % busy: a row's time "
               "over that (rows on concurrent streams can add up to more than 100%)"},
              {"families", fams},
              {"kernels", kernels}};
}

void print_step_profile(const json& p, const std::string& title, int top) {
  std::printf(
      "profile (%s): %d steps; per step %.3f ms from the first kernel's start to the last "
      "one's end, %.3f ms busy, %.3f ms idle (%.1f%%; %.1f gaps over 10 us, the longest %.1f us); "
      "%.0f kernels\n",
      title.c_str(), p["steps"].get<int>(), p["span_ms"].get<double>(), p["busy_ms"].get<double>(),
      p["idle_ms"].get<double>(), p["idle_pct"].get<double>(),
      p["gaps_over_10us_per_step"].get<double>(), p["largest_gap_us"].get<double>(),
      p["kernels_per_step"].get<double>());
  std::printf("  %-44s %9s %8s %11s\n", "family", "ms/step", "% busy", "calls/step");
  for (const json& f : p["families"])
    std::printf("  %-44s %9.3f %7.1f%% %11.1f\n", f["family"].get<std::string>().c_str(),
                f["ms_per_step"].get<double>(), f["pct_busy"].get<double>(),
                f["calls_per_step"].get<double>());
  std::printf("  %-72s %9s %8s %7s %9s %5s\n", "kernel", "ms/step", "% busy", "calls", "us/call",
              "regs");
  int shown = 0;
  for (const json& k : p["kernels"]) {
    if (shown++ == top) break;
    std::string name = k["name"].get<std::string>();
    if (name.size() > 72) name = name.substr(0, 69) + "...";
    std::printf("  %-72s %9.3f %7.1f%% %7.1f %9.1f %5s\n", name.c_str(),
                k["ms_per_step"].get<double>(), k["pct_busy"].get<double>(),
                k["calls_per_step"].get<double>(), k["us_per_call"].get<double>(),
                k.contains("registers") ? std::to_string(k["registers"].get<int>()).c_str() : "-");
  }
  const int rest = int(p["kernels"].size()) - top;
  if (rest > 0) std::printf("  ... %d more (the JSON has every one)\n", rest);
}

}  // namespace dino::bench
