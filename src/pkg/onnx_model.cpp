#include "pkg/onnx_model.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>

#include "core/fs.hpp"
#include "pkg/samples.hpp"
#include "runtime/npy.hpp"

namespace airlock::pkg {

using runtime::DataType;
using runtime::Tensor;

Result<std::string> CheckOnnxModel(const std::filesystem::path& model) {
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd probe, OpenForRead(model));  // a clear error for a missing file
  {
    // The checker's own message for a file that is not ONNX at all is misleading
    // ("ir_version not set"), so look first: an ONNX model is a ModelProto with a graph.
    onnx::ModelProto proto;
    std::ifstream in(model, std::ios::binary);
    if (!proto.ParseFromIstream(&in) || !proto.has_graph() || !proto.has_ir_version()) {
      return Fail(ErrorCode::kModel,
                  model.string() +
                      " is not an ONNX model (it does not parse as an ONNX ModelProto "
                      "with a graph)");
    }
    if (proto.ir_version() > onnx::Version::IR_VERSION) {
      // libonnx refuses any model newer than itself, however valid. ONNX Runtime's load, which
      // follows, validates the graph with its own (newer) schemas, so that is not lost.
      return "the ONNX checker here (libonnx, IR version " +
             std::to_string(onnx::Version::IR_VERSION) + ") is older than the model (IR version " +
             std::to_string(proto.ir_version()) +
             "); skipped it and relied on ONNX Runtime's validation";
    }
  }
  try {
    onnx::checker::check_model(model.string());
  } catch (const std::exception& e) {
    std::string what = e.what();
    return Fail(ErrorCode::kModel, model.string() + " fails the ONNX checker: " + what);
  }
  return std::string();
}

namespace {

template <typename Field, typename Out>
void AppendAs(const Field& field, std::string& data) {
  for (const auto& v : field) {
    Out o = static_cast<Out>(v);
    data.append(reinterpret_cast<const char*>(&o), sizeof(o));
  }
}

}  // namespace

Result<Tensor> LoadTensorProto(const std::filesystem::path& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path, 2ULL << 30));
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) {
    return Fail(ErrorCode::kCorrupt, path.string() + " is not a serialized ONNX TensorProto");
  }
  if (proto.data_location() == onnx::TensorProto::EXTERNAL || proto.external_data_size() > 0) {
    return Fail(ErrorCode::kUnsupported,
                path.string() + " keeps its data in an external file, which samples may not do");
  }
  Tensor t;
  t.name = proto.name();
  auto dtype = runtime::FromOnnxType(proto.data_type());
  if (!dtype) {
    return Fail(std::move(dtype.error()).WithContext(path.string()));
  }
  t.dtype = *dtype;
  t.shape.assign(proto.dims().begin(), proto.dims().end());
  if (t.dtype == DataType::kBytes) {
    t.strings.assign(proto.string_data().begin(), proto.string_data().end());
  } else if (proto.has_raw_data()) {
    t.data = proto.raw_data();
  } else {
    switch (t.dtype) {
      case DataType::kFp32:
        AppendAs<decltype(proto.float_data()), float>(proto.float_data(), t.data);
        break;
      case DataType::kFp64:
        AppendAs<decltype(proto.double_data()), double>(proto.double_data(), t.data);
        break;
      case DataType::kInt64:
        AppendAs<decltype(proto.int64_data()), std::int64_t>(proto.int64_data(), t.data);
        break;
      case DataType::kUint64:
        AppendAs<decltype(proto.uint64_data()), std::uint64_t>(proto.uint64_data(), t.data);
        break;
      case DataType::kUint32:
        AppendAs<decltype(proto.uint64_data()), std::uint32_t>(proto.uint64_data(), t.data);
        break;
      case DataType::kInt32:
        AppendAs<decltype(proto.int32_data()), std::int32_t>(proto.int32_data(), t.data);
        break;
      case DataType::kInt16:
        AppendAs<decltype(proto.int32_data()), std::int16_t>(proto.int32_data(), t.data);
        break;
      case DataType::kUint16:
      case DataType::kFp16:
      case DataType::kBf16:
        AppendAs<decltype(proto.int32_data()), std::uint16_t>(proto.int32_data(), t.data);
        break;
      case DataType::kInt8:
        AppendAs<decltype(proto.int32_data()), std::int8_t>(proto.int32_data(), t.data);
        break;
      case DataType::kUint8:
      case DataType::kBool:
        AppendAs<decltype(proto.int32_data()), std::uint8_t>(proto.int32_data(), t.data);
        break;
      case DataType::kBytes:
        break;
    }
  }
  auto consistent = t.CheckConsistent();
  if (!consistent) {
    return Fail(ErrorCode::kCorrupt, path.string() + ": " + consistent.error().message());
  }
  return t;
}

Result<Tensor> LoadTensorFile(const std::filesystem::path& path, std::string name) {
  std::string ext = path.extension().string();
  if (ext == ".npy") {
    return runtime::LoadNpy(path, std::move(name));
  }
  if (ext == ".pb") {
    AIRLOCK_ASSIGN_OR_RETURN(Tensor t, LoadTensorProto(path));
    if (!name.empty()) {
      t.name = std::move(name);
    }
    return t;
  }
  return Fail(ErrorCode::kInvalidArgument,
              path.string() + ": sample files must be NumPy .npy or ONNX TensorProto .pb");
}

namespace fs = std::filesystem;

Result<std::vector<SampleSet>> LoadOnnxTestData(const fs::path& dir) {
  std::vector<fs::path> set_dirs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory() && e.path().filename().string().starts_with("test_data_set_")) {
      set_dirs.push_back(e.path());
    }
  }
  if (ec) {
    return Fail(ErrorCode::kNotFound,
                "cannot read sample directory " + dir.string() + ": " + ec.message());
  }
  if (set_dirs.empty()) {
    return Fail(ErrorCode::kNotFound, dir.string() + " has no test_data_set_* directories");
  }
  std::sort(set_dirs.begin(), set_dirs.end());
  std::vector<SampleSet> sets;
  static const std::regex kFile(R"((input|output)_(\d+)\.pb)");
  for (const auto& sd : set_dirs) {
    SampleSet set;
    set.name = sd.filename().string();
    std::vector<std::pair<int, fs::path>> inputs, outputs;
    for (const auto& e : fs::directory_iterator(sd)) {
      std::smatch m;
      std::string fname = e.path().filename().string();
      if (std::regex_match(fname, m, kFile)) {
        (m[1] == "input" ? inputs : outputs).emplace_back(std::stoi(m[2]), e.path());
      }
    }
    std::sort(inputs.begin(), inputs.end());
    std::sort(outputs.begin(), outputs.end());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].first != static_cast<int>(i)) {
        return Fail(ErrorCode::kInvalidArgument,
                    sd.string() + ": input_" + std::to_string(i) + ".pb is missing");
      }
      AIRLOCK_ASSIGN_OR_RETURN(Tensor t, LoadTensorProto(inputs[i].second));
      set.inputs.push_back(std::move(t));
    }
    for (auto& [n, p] : outputs) {
      AIRLOCK_ASSIGN_OR_RETURN(Tensor t, LoadTensorProto(p));
      set.outputs.push_back(std::move(t));
    }
    sets.push_back(std::move(set));
  }
  return sets;
}

}  // namespace airlock::pkg
