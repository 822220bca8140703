// The cnn preset's six convolutions (forward, input and kernel gradients) on oneDNN
// alone, in float32 and bfloat16: what a JAX FFI call into oneDNN could give.
//
//   apt-get install libdnnl-dev   # Debian 12: oneDNN 2.6
//   g++ -O2 -std=c++17 benchmarks/onednn_convs.cpp -o /tmp/onednn_convs -ldnnl
//   /tmp/onednn_convs 128 blocked   # oneDNN picks its layouts (nChw16c)
//   /tmp/onednn_convs 128 nhwc      # JAX's channels-last layout
//
// Prints milliseconds per call for each layer, and the total of a training step's convolutions.
#include <oneapi/dnnl/dnnl.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

enum Pass { FORWARD, INPUT_GRAD, KERNEL_GRAD };

// The mean of 20 calls after 3 warm-up calls, in milliseconds.
static double time_ms(const primitive& op, stream& s, const std::unordered_map<int, memory>& args) {
  for (int i = 0; i < 3; i++) op.execute(s, args);
  s.wait();
  const int calls = 20;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; i++) op.execute(s, args);
  s.wait();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / calls;
}

// One pass of a 3x3 same-padded convolution: n images of size x size x in -> out channels.
static double conv_ms(engine& eng, stream& s, int n, int size, int in, int out, dt type, bool nhwc, Pass pass) {
  memory::dims src{n, in, size, size}, weights{out, in, 3, 3}, dst{n, out, size, size}, strides{1, 1}, pad{1, 1};
  tag act = nhwc ? tag::nhwc : tag::any, ker = nhwc ? tag::hwio : tag::any;
  auto src_md = memory::desc(src, type, act), weights_md = memory::desc(weights, type, ker);
  auto dst_md = memory::desc(dst, type, act);
  auto algo = algorithm::convolution_direct;
  convolution_forward::primitive_desc forward(
      convolution_forward::desc(prop_kind::forward_training, algo, src_md, weights_md,
                                memory::desc(dst, dt::f32, act), strides, pad, pad), eng);
  if (pass == FORWARD)
    return time_ms(convolution_forward(forward), s,
                   {{DNNL_ARG_SRC, memory(forward.src_desc(), eng)},
                    {DNNL_ARG_WEIGHTS, memory(forward.weights_desc(), eng)},
                    {DNNL_ARG_DST, memory(forward.dst_desc(), eng)}});
  if (pass == INPUT_GRAD) {
    convolution_backward_data::primitive_desc grad(
        convolution_backward_data::desc(algo, memory::desc(src, dt::f32, act), weights_md, dst_md, strides, pad, pad),
        eng, forward);
    return time_ms(convolution_backward_data(grad), s,
                   {{DNNL_ARG_DIFF_SRC, memory(grad.diff_src_desc(), eng)},
                    {DNNL_ARG_WEIGHTS, memory(grad.weights_desc(), eng)},
                    {DNNL_ARG_DIFF_DST, memory(grad.diff_dst_desc(), eng)}});
  }
  convolution_backward_weights::primitive_desc grad(
      convolution_backward_weights::desc(algo, src_md, memory::desc(weights, dt::f32, ker), dst_md, strides, pad, pad),
      eng, forward);
  return time_ms(convolution_backward_weights(grad), s,
                 {{DNNL_ARG_SRC, memory(grad.src_desc(), eng)},
                  {DNNL_ARG_DIFF_WEIGHTS, memory(grad.diff_weights_desc(), eng)},
                  {DNNL_ARG_DIFF_DST, memory(grad.diff_dst_desc(), eng)}});
}

int main(int argc, char** argv) {
  if (argc != 3 || (strcmp(argv[2], "nhwc") && strcmp(argv[2], "blocked"))) {
    fprintf(stderr, "usage: %s BATCH nhwc|blocked\n", argv[0]);
    return 2;
  }
  const int n = atoi(argv[1]);
  const bool nhwc = !strcmp(argv[2], "nhwc");
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const int layers[6][3] = {{28, 1, 32}, {28, 32, 32}, {14, 32, 64}, {14, 64, 64}, {7, 64, 128}, {7, 128, 128}};
  double total[2] = {0, 0};
  for (const auto& layer : layers) {
    printf("%2dx%-2d %3d->%-3d", layer[0], layer[0], layer[1], layer[2]);
    for (int t = 0; t < 2; t++) {
      printf("  %s: ", t ? "bf16" : "f32");
      for (Pass pass : {FORWARD, INPUT_GRAD, KERNEL_GRAD}) {
        if (pass == INPUT_GRAD && layer[1] == 1) continue;  // the image needs no gradient
        double ms = conv_ms(eng, s, n, layer[0], layer[1], layer[2], t ? dt::bf16 : dt::f32, nhwc, pass);
        total[t] += ms;
        printf("%6.2f", ms);
      }
    }
    printf("\n");
  }
  printf("all convolutions of a step of %d images: f32 %.1f ms, bf16 %.1f ms\n", n, total[0], total[1]);
}
