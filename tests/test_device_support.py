"""Which CUDA devices run the fused kernel: the decision with faked compute capabilities and arch lists (the
same C++ function the op's CUDA forward asks), backend_info(), and the images build_info() lists."""

import pytest
import torch

import fused_inception
from fused_inception import backend_info, build_info
from fused_inception.device_support import fused_kernel_decision

SHIPPED = "8.0;9.0+PTX"  # the default build: SASS for Ampere and Hopper, PTX for what comes after


@pytest.mark.parametrize("capability, arch_list, backend, why", [
    ((7, 5), SHIPPED, "unfused", "sm_75 (compute capability 7.5) lacks the fused kernel's instructions"),
    ((7, 0), "7.0;8.0;9.0+PTX", "unfused", "bf16 mma.sync and cp.async need 8.0"),
    ((8, 0), SHIPPED, "fused", "SASS for sm_80 runs on sm_80"),
    ((8, 6), SHIPPED, "fused", "SASS for sm_80 runs on sm_86"),  # same family, later minor: binary compatible
    ((8, 9), SHIPPED, "fused", "SASS for sm_80 runs on sm_89"),
    ((9, 0), SHIPPED, "fused", "SASS for sm_90 runs on sm_90"),
    ((10, 0), SHIPPED, "fused", "PTX compute_90 is compiled by the driver for sm_100"),
    ((12, 0), SHIPPED, "fused", "PTX compute_90 is compiled by the driver for sm_120"),
    ((10, 0), "8.0;9.0", "unfused", "rebuild with TORCH_CUDA_ARCH_LIST including 10.0"),  # no PTX: no image
    ((9, 0), "8.0", "unfused", "no image of the fused kernel runs on sm_90"),  # SASS does not cross families
    ((8, 0), "9.0+PTX", "unfused", "no image"),  # PTX runs on its own and later architectures only
    ((9, 0), "9.0a", "fused", "SASS for sm_90a runs on sm_90"),
    ((10, 0), "9.0a", "unfused", "no image"),  # architecture-specific code runs on that architecture only
    ((10, 3), "8.0 10.0+PTX", "fused", "SASS for sm_100 runs on sm_103"),  # spaces separate entries too
    ((9, 0), "", "unfused", "no CUDA image"),
])
def test_decision_with_faked_capabilities(capability, arch_list, backend, why):
    decided, reason = fused_kernel_decision(capability, arch_list, "fused")
    assert decided == backend and why in reason, reason


def test_unfused_setting_wins_everywhere():
    for capability in ((7, 5), (9, 0), (12, 0)):
        assert fused_kernel_decision(capability, SHIPPED, "unfused") == (
            "unfused", "chosen with fused_inception.cuda_backend('unfused')")
    with pytest.raises(ValueError, match="setting must be one of"):
        fused_kernel_decision((9, 0), SHIPPED, "cudnn")


@pytest.mark.parametrize("arch_list, images", [
    ("8.0;9.0+PTX", ["sm_80", "sm_90", "compute_90"]),
    ("8.0 8.6, 9.0a;10.0f+PTX", ["sm_80", "sm_86", "sm_90a", "sm_100", "compute_100"]),
    ("Hopper;9.0", ["sm_90"]),  # names are torch's to resolve; the check reads numbers
])
def test_cuda_images_parse_arch_lists(arch_list, images):
    assert torch.ops.fused_inception._cuda_images(arch_list) == images


def test_build_info_lists_the_compiled_images():
    info = build_info()
    assert info["cuda_archs"] == tuple(torch.ops.fused_inception._cuda_images(info["cuda_arch_list"]))
    if info["with_cuda"]:
        # setup.py ships PTX for forward compatibility and no SASS the kernel cannot run.
        assert any(image.startswith("compute_") for image in info["cuda_archs"]), info
        assert all(int(image[3:5]) >= 80 for image in info["cuda_archs"] if image.startswith("sm_")), info
    else:
        assert info["cuda_archs"] == ()


def test_backend_info_on_the_cpu_follows_the_setting():
    assert backend_info("cpu").backend == "unfused"
    with fused_inception.cpu_backend("fused"):
        info = backend_info("cpu")
    assert info.backend == "fused" and "SIMT emulator" in info.reason and str(info).startswith("cpu: fused (")
    assert backend_info("meta") == fused_inception.BackendInfo(
        "meta", "none", "the op has no implementation for meta tensors")
    with pytest.raises(ValueError, match="backend_info: device must name a torch device, got 'tpu'"):
        backend_info("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answers")
def test_backend_info_without_a_gpu():
    assert backend_info().device == "cpu"
    if build_info()["with_cuda"]:
        with pytest.raises(ValueError, match="no CUDA device is available here"):
            backend_info("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_backend_info_on_this_gpu_is_the_decision_for_its_capability():
    info = backend_info("cuda")
    capability = torch.cuda.get_device_capability()
    assert (info.backend, info.reason) == fused_kernel_decision(capability, build_info()["cuda_arch_list"])
    with fused_inception.cuda_backend("unfused"):
        assert backend_info("cuda").backend == "unfused"
