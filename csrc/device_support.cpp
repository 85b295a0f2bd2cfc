#include "device_support.h"

#include <torch/library.h>

#include <string>
#include <tuple>

namespace fused_inception {
namespace {

constexpr int kFusedKernelMinCapability = 80;  // bf16 mma.sync and cp.async

struct ArchEntry {
  int capability;     // 10 * major + minor
  bool specific;      // "9.0a": SASS for exactly that architecture, no PTX forward compatibility
  bool ptx;           // "+PTX": PTX too
};

// Hand-rolled rather than with std::istringstream: on the device image the extension is built by another
// g++ than torch's libstdc++ expects, and istream >> int crashed there at import (2026-11-28, H200).
std::vector<ArchEntry> parse_arch_list(const std::string& arch_list) {
  std::vector<ArchEntry> entries;
  size_t pos = 0;
  while (pos < arch_list.size()) {
    const size_t end = arch_list.find_first_of("; ,", pos);
    const std::string word = arch_list.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? arch_list.size() : end + 1;
    // word: MAJOR.MINOR, then "a" or "f" at most, then "+PTX" at most.
    size_t i = 0;
    int major = 0;
    while (i < word.size() && word[i] >= '0' && word[i] <= '9' && major < 100) major = 10 * major + (word[i++] - '0');
    if (i == 0 || i >= word.size() || word[i] != '.') continue;
    ++i;
    if (i >= word.size() || word[i] < '0' || word[i] > '9') continue;
    const int minor = word[i++] - '0';
    ArchEntry entry{10 * major + minor, false, false};
    std::string rest = word.substr(i);
    if (!rest.empty() && (rest[0] == 'a' || rest[0] == 'f')) {
      entry.specific = rest[0] == 'a';
      rest.erase(0, 1);
    }
    if (rest == "+PTX") entry.ptx = true;
    else if (!rest.empty()) continue;
    entries.push_back(entry);
  }
  return entries;
}

std::string sm(int capability) { return "sm_" + std::to_string(capability); }

}  // namespace

std::vector<std::string> cuda_images(const std::string& arch_list) {
  std::vector<std::string> images;
  for (const auto& e : parse_arch_list(arch_list)) {
    images.push_back(sm(e.capability) + (e.specific ? "a" : ""));
    if (e.ptx) images.push_back("compute_" + std::to_string(e.capability));
  }
  return images;
}

FusedKernelSupport fused_kernel_support(int major, int minor, const std::string& arch_list) {
  const int capability = 10 * major + minor;
  const std::string device = sm(capability) + " (compute capability " + std::to_string(major) + "." +
                             std::to_string(minor) + ")";
  if (capability < kFusedKernelMinCapability) {
    return {false, device + " lacks the fused kernel's instructions (bf16 mma.sync and cp.async need 8.0)"};
  }
  const auto entries = parse_arch_list(arch_list);
  if (entries.empty()) return {false, "the extension holds no CUDA image (built without CUDA architectures)"};
  // SASS runs on its own architecture family at the same or a later minor version; "a" SASS only on itself.
  for (const auto& e : entries) {
    if (e.capability / 10 == major && (e.specific ? e.capability == capability : e.capability <= capability)) {
      return {true, "SASS for " + sm(e.capability) + (e.specific ? "a" : "") + " runs on " + device};
    }
  }
  // PTX is compiled by the driver for any later device (once per process, cached by the driver).
  for (const auto& e : entries) {
    if (e.ptx && !e.specific && e.capability <= capability) {
      return {true, "PTX compute_" + std::to_string(e.capability) + " is compiled by the driver for " + device};
    }
  }
  return {false, "no image of the fused kernel runs on " + device + ": the build has " + arch_list +
                     " (rebuild with TORCH_CUDA_ARCH_LIST including " + std::to_string(major) + "." +
                     std::to_string(minor) + ")"};
}

namespace {

std::tuple<bool, std::string> fused_kernel_support_op(int64_t major, int64_t minor, const std::string& arch_list) {
  const auto support = fused_kernel_support(int(major), int(minor), arch_list);
  return {support.runs, support.why};
}

std::vector<std::string> cuda_images_op(const std::string& arch_list) { return cuda_images(arch_list); }

}  // namespace

// For backend_info() and build_info(), and to test the decision with any capability and arch list on a CPU.
TORCH_LIBRARY_FRAGMENT(fused_inception, m) {
  m.def("_fused_kernel_support(int major, int minor, str arch_list) -> (bool, str)", &fused_kernel_support_op);
  m.def("_cuda_images(str arch_list) -> str[]", &cuda_images_op);
}

}  // namespace fused_inception
