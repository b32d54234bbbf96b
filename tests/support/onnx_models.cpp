#include "support/onnx_models.hpp"

#include <onnx/onnx_pb.h>

#include <fstream>

#include "runtime/tensor.hpp"

namespace airlock::testing {
namespace {

onnx::ModelProto NewModel(int ir_version = 8) {
  onnx::ModelProto m;
  m.set_ir_version(ir_version);
  m.set_producer_name("airlock-tests");
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  return m;
}

void AddTensorIo(onnx::ValueInfoProto* v, const std::string& name, int elem,
                 std::initializer_list<std::string> dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem);
  auto* shape = t->mutable_shape();
  for (const auto& d : dims) {
    auto* dim = shape->add_dim();
    if (!d.empty() && std::isdigit(static_cast<unsigned char>(d[0]))) {
      dim->set_dim_value(std::stoll(d));
    } else {
      dim->set_dim_param(d);
    }
  }
}

void Save(const onnx::ModelProto& m, const std::filesystem::path& path) {
  if (!path.parent_path().empty()) {
    std::filesystem::create_directories(path.parent_path());
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  m.SerializeToOstream(&out);
}

void AddScalar(onnx::GraphProto* g, const std::string& name, float v) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_float_data(v);
}

}  // namespace

void WriteAffineModel(const std::filesystem::path& path, int n, int ir_version) {
  auto m = NewModel(ir_version);
  auto* g = m.mutable_graph();
  g->set_name("affine");
  AddTensorIo(g->add_input(), "x", onnx::TensorProto::FLOAT, {"batch", std::to_string(n)});
  AddTensorIo(g->add_output(), "y", onnx::TensorProto::FLOAT, {"batch", std::to_string(n)});
  AddScalar(g, "two", 2.0f);
  AddScalar(g, "one", 1.0f);
  auto* mul = g->add_node();
  mul->set_op_type("Mul");
  mul->add_input("x");
  mul->add_input("two");
  mul->add_output("x2");
  auto* add = g->add_node();
  add->set_op_type("Add");
  add->add_input("x2");
  add->add_input("one");
  add->add_output("y");
  Save(m, path);
}

void WriteUnknownOpModel(const std::filesystem::path& path) {
  auto m = NewModel();
  auto* custom = m.add_opset_import();
  custom->set_domain("com.example.nowhere");
  custom->set_version(1);
  auto* g = m.mutable_graph();
  g->set_name("unknown_op");
  AddTensorIo(g->add_input(), "x", onnx::TensorProto::FLOAT, {"1", "4"});
  AddTensorIo(g->add_output(), "y", onnx::TensorProto::FLOAT, {"1", "4"});
  auto* node = g->add_node();
  node->set_op_type("FluxCapacitor");
  node->set_domain("com.example.nowhere");
  node->add_input("x");
  node->add_output("y");
  Save(m, path);
}

void WriteIdentityModel(const std::filesystem::path& path, const std::vector<int>& onnx_types) {
  auto m = NewModel();
  auto* g = m.mutable_graph();
  g->set_name("identity");
  for (int type : onnx_types) {
    std::string name = std::string(runtime::DataTypeName(runtime::FromOnnxType(type).value()));
    AddTensorIo(g->add_input(), "in_" + name, type, {"batch", "n"});
    AddTensorIo(g->add_output(), "out_" + name, type, {"batch", "n"});
    auto* node = g->add_node();
    node->set_op_type("Identity");
    node->add_input("in_" + name);
    node->add_output("out_" + name);
  }
  Save(m, path);
}

void WriteStringIdentityModel(const std::filesystem::path& path) {
  auto m = NewModel();
  auto* g = m.mutable_graph();
  g->set_name("strings");
  AddTensorIo(g->add_input(), "text", onnx::TensorProto::STRING, {"n"});
  AddTensorIo(g->add_output(), "same", onnx::TensorProto::STRING, {"n"});
  auto* node = g->add_node();
  node->set_op_type("Identity");
  node->add_input("text");
  node->add_output("same");
  Save(m, path);
}

}  // namespace airlock::testing
