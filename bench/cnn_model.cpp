#include "cnn_model.hpp"

#include <onnx/onnx_pb.h>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace airlock::bench {
namespace {

// Builds the graph node by node; each value gets a fresh name.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* g) : g_(g), rng_(2026) {}

  // Conv with a bias, He-initialised weights [cout, cin, k, k].
  std::string Conv(const std::string& x, int cin, int cout, int k, int stride) {
    std::string w = Weights({cout, cin, k, k}, std::sqrt(2.0f / static_cast<float>(cin * k * k)));
    std::string b = Weights({cout}, 0.0f);
    auto* n = Node("Conv", {x, w, b});
    Ints(n, "kernel_shape", {k, k});
    Ints(n, "strides", {stride, stride});
    int p = k / 2;
    Ints(n, "pads", {p, p, p, p});
    return n->output(0);
  }
  std::string Unary(const char* op, const std::string& x) { return Node(op, {x})->output(0); }
  std::string Add(const std::string& a, const std::string& b) {
    return Node("Add", {a, b})->output(0);
  }
  std::string MaxPool(const std::string& x) {
    auto* n = Node("MaxPool", {x});
    Ints(n, "kernel_shape", {3, 3});
    Ints(n, "strides", {2, 2});
    Ints(n, "pads", {1, 1, 1, 1});
    return n->output(0);
  }
  // Two 3x3 convolutions and the identity shortcut (a ResNet basic block).
  std::string Block(const std::string& x, int c) {
    std::string y = Unary("Relu", Conv(x, c, c, 3, 1));
    y = Conv(y, c, c, 3, 1);
    return Unary("Relu", Add(y, x));
  }
  // A stride-2 convolution that doubles the channels.
  std::string Down(const std::string& x, int cin, int cout) {
    return Unary("Relu", Conv(x, cin, cout, 3, 2));
  }
  std::string Classifier(const std::string& x, int c, int classes, const std::string& out) {
    std::string pooled = Unary("Flatten", Unary("GlobalAveragePool", x));
    std::string w = Weights({classes, c}, std::sqrt(1.0f / static_cast<float>(c)));
    std::string b = Weights({classes}, 0.0f);
    auto* gemm = Node("Gemm", {pooled, w, b});
    auto* trans_b = gemm->add_attribute();
    trans_b->set_name("transB");
    trans_b->set_type(onnx::AttributeProto::INT);
    trans_b->set_i(1);
    auto* softmax = Node("Softmax", {gemm->output(0)});
    softmax->set_output(0, out);
    auto* axis = softmax->add_attribute();
    axis->set_name("axis");
    axis->set_type(onnx::AttributeProto::INT);
    axis->set_i(1);
    return out;
  }

 private:
  onnx::NodeProto* Node(const char* op, const std::vector<std::string>& inputs) {
    auto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(std::string(op) + "_" + std::to_string(next_));
    for (const auto& in : inputs) {
      n->add_input(in);
    }
    n->add_output("t" + std::to_string(next_++));
    return n;
  }
  static void Ints(onnx::NodeProto* n, const char* name, std::vector<int> values) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int v : values) {
      a->add_ints(v);
    }
  }
  // An initializer of normally distributed values (all zero when stddev is 0).
  std::string Weights(const std::vector<int>& dims, float stddev) {
    std::size_t n = 1;
    auto* t = g_->add_initializer();
    t->set_name("w" + std::to_string(next_++));
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int d : dims) {
      t->add_dims(d);
      n *= static_cast<std::size_t>(d);
    }
    std::normal_distribution<float> dist(0.0f, stddev > 0 ? stddev : 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) {
      x = stddev > 0 ? dist(rng_) : 0.0f;
    }
    t->set_raw_data(reinterpret_cast<const char*>(v.data()), n * sizeof(float));
    return t->name();
  }

  onnx::GraphProto* g_;
  std::mt19937 rng_;
  int next_ = 0;
};

void TensorIo(onnx::ValueInfoProto* v, const std::string& name, std::vector<int> dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  auto* batch = t->mutable_shape()->add_dim();
  batch->set_dim_param("batch");
  for (int d : dims) {
    t->mutable_shape()->add_dim()->set_dim_value(d);
  }
}

}  // namespace

void WriteResNetLikeModel(const std::filesystem::path& path) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("airlock-bench");
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("resnet_like");
  TensorIo(g->add_input(), "image", {3, 224, 224});
  TensorIo(g->add_output(), "probabilities", {10});

  GraphBuilder b(g);
  // 224 -> 112 (stem) -> 56 (pool) -> 28 -> 14, channels 16 -> 32 -> 64.
  std::string x = b.MaxPool(b.Unary("Relu", b.Conv("image", 3, 16, 7, 2)));
  x = b.Block(b.Block(x, 16), 16);
  x = b.Block(b.Down(x, 16, 32), 32);
  x = b.Block(b.Down(x, 32, 64), 64);
  b.Classifier(x, 64, 10, "probabilities");

  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  m.SerializeToOstream(&out);
}

}  // namespace airlock::bench
