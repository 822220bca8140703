// 2-D convolutions for JAX on the CPU, computed by oneDNN in its blocked layout.
//
// Activations are (N, C/B, H, W, B) arrays: oneDNN's nChw16c (AVX-512) or nChw8c,
// which its direct convolutions compute at close to the CPU's peak; images with
// fewer channels than a block (the first layer's input) are NCHW. Kernels
// are Keras's HWIO. Unit strides and dilation; padding as given. The module
// `_convs` gives the two XLA FFI handlers below as capsules, which mnist_classifier's
// onednn.py registers, and what this oneDNN can do on this CPU.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#if DNNL_VERSION_MAJOR != 2 && DNNL_VERSION_MAJOR != 3
#error "onednn_convs.cc is written for oneDNN 2.x and 3.x"
#endif

#include <exception>
#include <stdexcept>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace nb = nanobind;
using dnnl::algorithm;
using dnnl::engine;
using dnnl::memory;
using dnnl::prop_kind;
using dnnl::reorder;
using dnnl::stream;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

engine& cpu() {
  static engine eng(engine::kind::cpu, 0);
  return eng;
}

// One convolution: batch, channels in and out, input size, kernel size, padding (top, left, bottom, right), type.
using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, dt>;

struct Conv {
  memory::desc src, weights, dst, weights_grad;  // as JAX holds them; the kernel gradient always in float32
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data::primitive_desc input_grad_pd;
  dnnl::convolution_backward_data input_grad;
  dnnl::convolution_backward_weights::primitive_desc kernel_grad_pd;
  dnnl::convolution_backward_weights kernel_grad;
};

// The forward primitive descriptor; oneDNN 2.x makes it from an operation descriptor, which 3.0 folded into it.
dnnl::convolution_forward::primitive_desc forward_desc(const memory::desc& src, const memory::desc& weights,
                                                       const memory::desc& dst, const memory::dims& strides,
                                                       const memory::dims& pad_before, const memory::dims& pad_after,
                                                       const dnnl::primitive_attr& attr = {}) {
  auto kind = prop_kind::forward_training;
  auto direct = algorithm::convolution_direct;
#if DNNL_VERSION_MAJOR >= 3
  return {cpu(), kind, direct, src, weights, dst, strides, pad_before, pad_after, attr};
#else
  return {{kind, direct, src, weights, dst, strides, pad_before, pad_after}, attr, cpu()};
#endif
}

// The primitive descriptor of a gradient of the convolution `forward` describes: Primitive is
// convolution_backward_data (`weights` as given, src and dst their gradients) or convolution_backward_weights.
template <typename Primitive>
typename Primitive::primitive_desc gradient_desc(const memory::desc& src, const memory::desc& weights,
                                                 const memory::desc& dst, const memory::dims& strides,
                                                 const memory::dims& pad_before, const memory::dims& pad_after,
                                                 const dnnl::primitive_attr& attr,
                                                 const dnnl::convolution_forward::primitive_desc& forward) {
  auto direct = algorithm::convolution_direct;
#if DNNL_VERSION_MAJOR >= 3
  return {cpu(), direct, src, weights, dst, strides, pad_before, pad_after, forward, attr};
#else
  return {{direct, src, weights, dst, strides, pad_before, pad_after}, attr, cpu(), forward};
#endif
}

// The activation layout of `channels` channels: blocked when they fill whole blocks, else NCHW.
tag activation_tag(int64_t channels, int64_t block) {
  if (channels % block) return tag::nchw;
  return block == 16 ? tag::nChw16c : tag::nChw8c;
}

// The primitives of one shape, created on first use and kept. They divide their work among the threads
// that OpenMP offers when they are created (`threads`, which the caller has set), so that is part of the key.
const Conv& conv(const Shape& shape, int64_t block, int64_t threads) {
  static std::mutex lock;
  static std::map<std::tuple<Shape, int64_t, int64_t>, std::unique_ptr<Conv>> made;
  std::lock_guard<std::mutex> guard(lock);
  auto& slot = made[{shape, block, threads}];
  if (slot) return *slot;
  auto [n, in, out, height, width, rows, columns, top, left, bottom, right, type] = shape;
  memory::dims strides{1, 1}, pad_before{top, left}, pad_after{bottom, right};
  memory::dims dst_dims{n, out, height + top + bottom - rows + 1, width + left + right - columns + 1};
  auto c = std::make_unique<Conv>();
  c->src = memory::desc({n, in, height, width}, type, activation_tag(in, block));
  c->weights = memory::desc({out, in, rows, columns}, type, tag::hwio);
  c->weights_grad = memory::desc({out, in, rows, columns}, dt::f32, tag::hwio);
  c->dst = memory::desc(dst_dims, type, activation_tag(out, block));
  auto any_weights = memory::desc({out, in, rows, columns}, type, tag::any);
  dnnl::primitive_attr attr;  // each call brings its own scratchpad: devices may run one primitive at once
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  c->forward_pd = forward_desc(c->src, any_weights, c->dst, strides, pad_before, pad_after, attr);
  c->forward = dnnl::convolution_forward(c->forward_pd);
  if (in % block == 0) {  // else the first layer, whose images need no gradient
    c->input_grad_pd = gradient_desc<dnnl::convolution_backward_data>(c->src, any_weights, c->dst, strides,
                                                                      pad_before, pad_after, attr, c->forward_pd);
    c->input_grad = dnnl::convolution_backward_data(c->input_grad_pd);
  }
  auto any_float_weights = memory::desc({out, in, rows, columns}, dt::f32, tag::any);
  c->kernel_grad_pd = gradient_desc<dnnl::convolution_backward_weights>(c->src, any_float_weights, c->dst, strides,
                                                                         pad_before, pad_after, attr, c->forward_pd);
  c->kernel_grad = dnnl::convolution_backward_weights(c->kernel_grad_pd);
  slot = std::move(c);
  return *slot;
}

// The shape of a call: `src` is (N, C/B, H, W, B) or (N, C, H, W); `weights` is HWIO; both float32 or bfloat16.
Shape shape_of(ffi::AnyBuffer src, ffi::AnyBuffer weights, int64_t top, int64_t left, int64_t bottom, int64_t right) {
  auto s = src.dimensions();
  auto w = weights.dimensions();
  auto kind = src.element_type();
  if (weights.element_type() != kind || (kind != ffi::DataType::F32 && kind != ffi::DataType::BF16))
    throw std::invalid_argument("expected float32 or bfloat16 images and kernel of the same type");
  dt type = kind == ffi::DataType::BF16 ? dt::bf16 : dt::f32;
  return {s[0], w[2], w[3], s[2], s[3], w[0], w[1], top, left, bottom, right, type};
}

// Scratch memory for one execution of the primitive that `pd` describes.
memory scratchpad(const dnnl::primitive_desc_base& pd) { return memory(pd.scratchpad_desc(), cpu()); }

// `data` in `have`'s layout, or a reordered copy in `want`'s. (Kernels are reordered on every call: they change
// at every step, and at most 128x128x3x3 they cost microseconds.)
memory as_layout(stream& s, const memory::desc& have, const memory::desc& want, void* data) {
  memory given(have, cpu(), data);
  if (have == want) return given;
  memory copy(want, cpu());
  reorder(given, copy).execute(s, given, copy);
  return copy;
}

ffi::Error forward(ffi::AnyBuffer src, ffi::AnyBuffer weights, ffi::Result<ffi::AnyBuffer> dst, int64_t block,
                   int64_t top, int64_t left, int64_t bottom, int64_t right, int64_t threads) {
  omp_set_num_threads(threads);  // for this calling thread (an XLA worker), which only ever runs these calls
  try {
    const Conv& c = conv(shape_of(src, weights, top, left, bottom, right), block, threads);
    stream s(cpu());
    memory kernel = as_layout(s, c.weights, c.forward_pd.weights_desc(), weights.untyped_data());
    c.forward.execute(s, {{DNNL_ARG_SRC, memory(c.src, cpu(), src.untyped_data())},
                          {DNNL_ARG_WEIGHTS, kernel},
                          {DNNL_ARG_DST, memory(c.dst, cpu(), dst->untyped_data())},
                          {DNNL_ARG_SCRATCHPAD, scratchpad(c.forward_pd)}});
    s.wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error backward(ffi::AnyBuffer src, ffi::AnyBuffer weights, ffi::AnyBuffer dst_grad,
                    ffi::Result<ffi::AnyBuffer> src_grad, ffi::Result<ffi::AnyBuffer> weights_grad, int64_t block,
                    int64_t top, int64_t left, int64_t bottom, int64_t right, int64_t threads) {
  omp_set_num_threads(threads);  // for this calling thread (an XLA worker), which only ever runs these calls
  try {
    const Conv& c = conv(shape_of(src, weights, top, left, bottom, right), block, threads);
    stream s(cpu());
    memory diff_dst(c.dst, cpu(), dst_grad.untyped_data());
    if (c.input_grad) {
      memory kernel = as_layout(s, c.weights, c.input_grad_pd.weights_desc(), weights.untyped_data());
      c.input_grad.execute(s, {{DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_WEIGHTS, kernel},
                               {DNNL_ARG_DIFF_SRC, memory(c.src, cpu(), src_grad->untyped_data())},
                               {DNNL_ARG_SCRATCHPAD, scratchpad(c.input_grad_pd)}});
    }
    memory user_grad(c.weights_grad, cpu(), weights_grad->untyped_data());
    bool direct = c.kernel_grad_pd.diff_weights_desc() == c.weights_grad;
    memory grad = direct ? user_grad : memory(c.kernel_grad_pd.diff_weights_desc(), cpu());
    c.kernel_grad.execute(s, {{DNNL_ARG_SRC, memory(c.src, cpu(), src.untyped_data())},
                              {DNNL_ARG_DIFF_DST, diff_dst},
                              {DNNL_ARG_DIFF_WEIGHTS, grad},
                              {DNNL_ARG_SCRATCHPAD, scratchpad(c.kernel_grad_pd)}});
    if (!direct) reorder(grad, user_grad).execute(s, grad, user_grad);
    s.wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution gradient: ") + e.what());
  }
  return ffi::Error::Success();
}

// A 32->32 channel 3x3 convolution of 14x14 images, its layouts left to oneDNN.
dnnl::convolution_forward::primitive_desc probe(dt type) {
  auto images = memory::desc({32, 32, 14, 14}, type, tag::any);
  auto weights = memory::desc({32, 32, 3, 3}, type, tag::any);
  return forward_desc(images, weights, images, {1, 1}, {1, 1}, {1, 1});
}

// The attributes both handlers take, after their buffers.
template <typename Binding>
auto with_attributes(Binding binding) {
  return std::move(binding)
      .template Attr<int64_t>("block")
      .template Attr<int64_t>("top")
      .template Attr<int64_t>("left")
      .template Attr<int64_t>("bottom")
      .template Attr<int64_t>("right")
      .template Attr<int64_t>("threads");
}

// The channel block oneDNN's convolutions prefer on this CPU: 16, 8, or 0 for neither.
int channel_block() {
  try {
    auto chosen = probe(dt::f32).src_desc();
    for (int block : {16, 8})
      if (chosen == memory::desc({32, 32, 14, 14}, dt::f32, activation_tag(32, block))) return block;
  } catch (const std::exception&) {  // no convolution at all
  }
  return 0;
}

// Whether oneDNN computes bfloat16 convolutions natively here (AVX512_BF16 or AMX), not by conversion.
bool native_bfloat16() {
  try {
    std::string impl = probe(dt::bf16).impl_info_str();
    return impl.find("avx512_core_bf16") != std::string::npos || impl.find("amx") != std::string::npos;
  } catch (const std::exception&) {  // no bfloat16 convolution below AVX-512
    return false;
  }
}

// The version of the oneDNN library loaded, e.g. "2.6.3".
std::string version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConv, forward,
                              with_attributes(ffi::Ffi::Bind()
                                                  .Arg<ffi::AnyBuffer>()
                                                  .Arg<ffi::AnyBuffer>()
                                                  .Ret<ffi::AnyBuffer>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvGrad, backward,
                              with_attributes(ffi::Ffi::Bind()
                                                  .Arg<ffi::AnyBuffer>()
                                                  .Arg<ffi::AnyBuffer>()
                                                  .Arg<ffi::AnyBuffer>()
                                                  .Ret<ffi::AnyBuffer>()
                                                  .Ret<ffi::AnyBuffer>()));

NB_MODULE(_convs, m) {
  m.def(
      "registrations",
      []() {
        nb::dict handlers;
        handlers["OnednnConv"] = nb::capsule(reinterpret_cast<void*>(OnednnConv));
        handlers["OnednnConvGrad"] = nb::capsule(reinterpret_cast<void*>(OnednnConvGrad));
        return handlers;
      },
      "The XLA FFI handlers by target name: OnednnConv (forward), OnednnConvGrad (input and kernel gradients).");
  m.def("block", &channel_block,
        "The channel block oneDNN's convolutions prefer on this CPU: 16, 8, or 0 for neither.");
  m.def("native_bfloat16", &native_bfloat16,
        "Whether oneDNN computes bfloat16 convolutions natively here (AVX512_BF16 or AMX), not by conversion.");
  m.def("version", &version, "The version of the oneDNN library loaded, e.g. '2.6.3'.");
}
