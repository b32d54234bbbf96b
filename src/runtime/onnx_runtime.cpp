#include "runtime/onnx_runtime.hpp"

#include <onnxruntime_cxx_api.h>

#include <cstring>
#include <mutex>

namespace airlock::runtime {
namespace {

Error OrtError(const Ort::Exception& e, std::string_view what) {
  return Error(ErrorCode::kModel, std::string(what) + ": " + e.what());
}

class OrtBackend final : public InferenceBackend {
 public:
  OrtBackend(Ort::Session session, ModelSignature signature)
      : session_(std::move(session)), signature_(std::move(signature)) {
    for (const auto& s : signature_.inputs) {
      input_names_.push_back(s.name.c_str());
    }
    for (const auto& s : signature_.outputs) {
      output_names_.push_back(s.name.c_str());
    }
  }

  const ModelSignature& signature() const override { return signature_; }

  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) override {
    std::vector<const Tensor*> ordered(signature_.inputs.size(), nullptr);
    for (const auto& t : inputs) {
      std::size_t i = 0;
      while (i < signature_.inputs.size() && signature_.inputs[i].name != t.name) {
        ++i;
      }
      if (i == signature_.inputs.size()) {
        return Fail(ErrorCode::kInvalidArgument, "the model has no input named \"" + t.name + "\"");
      }
      AIRLOCK_RETURN_IF_ERROR(CheckAgainstSpec(t, signature_.inputs[i]));
      ordered[i] = &t;
    }
    for (std::size_t i = 0; i < ordered.size(); ++i) {
      if (ordered[i] == nullptr) {
        return Fail(ErrorCode::kInvalidArgument,
                    "missing input \"" + signature_.inputs[i].name + "\"");
      }
    }
    try {
      Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      Ort::AllocatorWithDefaultOptions allocator;
      std::vector<Ort::Value> values;
      static char empty_buffer[8];
      for (const Tensor* t : ordered) {
        auto type = static_cast<ONNXTensorElementDataType>(ToOnnxType(t->dtype));
        if (t->dtype == DataType::kBytes) {
          Ort::Value v =
              Ort::Value::CreateTensor(allocator, t->shape.data(), t->shape.size(), type);
          // Element by element with explicit lengths: strings may hold NUL bytes.
          for (std::size_t i = 0; i < t->strings.size(); ++i) {
            char* dst = v.GetResizedStringTensorElementBuffer(i, t->strings[i].size());
            std::memcpy(dst, t->strings[i].data(), t->strings[i].size());
          }
          values.push_back(std::move(v));
        } else {
          // ONNX Runtime reads inputs in place and does not modify them.
          void* data = t->data.empty() ? empty_buffer : const_cast<char*>(t->data.data());
          values.push_back(Ort::Value::CreateTensor(cpu, data, t->data.size(), t->shape.data(),
                                                    t->shape.size(), type));
        }
      }
      auto outputs = session_.Run(Ort::RunOptions{nullptr}, input_names_.data(), values.data(),
                                  values.size(), output_names_.data(), output_names_.size());
      std::vector<Tensor> result;
      for (std::size_t i = 0; i < outputs.size(); ++i) {
        AIRLOCK_ASSIGN_OR_RETURN(Tensor t, ToTensor(outputs[i], signature_.outputs[i].name));
        result.push_back(std::move(t));
      }
      return result;
    } catch (const Ort::Exception& e) {
      return Fail(OrtError(e, "ONNX Runtime failed to run the model"));
    }
  }

 private:
  static Result<Tensor> ToTensor(const Ort::Value& v, const std::string& name) {
    if (!v.IsTensor()) {
      return Fail(ErrorCode::kUnsupported, "output " + name + " is not a tensor");
    }
    auto info = v.GetTensorTypeAndShapeInfo();
    Tensor t;
    t.name = name;
    AIRLOCK_ASSIGN_OR_RETURN(t.dtype, FromOnnxType(info.GetElementType()));
    t.shape = info.GetShape();
    std::size_t count = info.GetElementCount();
    if (t.dtype == DataType::kBytes) {
      std::size_t len = v.GetStringTensorDataLength();
      std::string buffer(len, '\0');
      std::vector<std::size_t> offsets(count);
      if (count > 0) {
        v.GetStringTensorContent(buffer.data(), len, offsets.data(), count);
      }
      for (std::size_t i = 0; i < count; ++i) {
        std::size_t end = i + 1 < count ? offsets[i + 1] : len;
        t.strings.push_back(buffer.substr(offsets[i], end - offsets[i]));
      }
    } else {
      std::size_t bytes = count * ElementSize(t.dtype);
      t.data.resize(bytes);
      if (bytes > 0) {
        std::memcpy(t.data.data(), v.GetTensorRawData(), bytes);
      }
    }
    return t;
  }

  Ort::Session session_;
  ModelSignature signature_;
  std::vector<const char*> input_names_;
  std::vector<const char*> output_names_;
};

Result<TensorSpec> SpecOf(const std::string& name, const Ort::TypeInfo& info, const char* side) {
  if (info.GetONNXType() != ONNX_TYPE_TENSOR) {
    return Fail(ErrorCode::kUnsupported,
                std::string(side) + " \"" + name +
                    "\" is not a tensor (sequences, maps and optionals are not supported)");
  }
  auto tinfo = info.GetTensorTypeAndShapeInfo();
  TensorSpec spec;
  spec.name = name;
  AIRLOCK_ASSIGN_OR_RETURN(spec.dtype, FromOnnxType(tinfo.GetElementType()));
  spec.shape = tinfo.GetShape();
  for (auto& d : spec.shape) {
    d = d < 0 ? -1 : d;
  }
  for (const char* sym : tinfo.GetSymbolicDimensions()) {
    spec.dim_names.push_back(sym ? sym : "");
  }
  spec.dim_names.resize(spec.shape.size());
  return spec;
}

}  // namespace

struct OnnxRuntime::Impl {
  // Errors reach the caller in the exceptions we convert; ONNX Runtime's own log would say them
  // a second time on stderr. The Env is made on the first load: it costs about 15 MB of resident
  // memory, which an agent with no model loaded should not pay.
  explicit Impl(const RuntimeOptions& o) : options(o), shared_pool(o.shared_pool_threads > 0) {}

  Ort::Env& Env() {
    std::call_once(once, [&] {
      if (shared_pool) {
        Ort::ThreadingOptions threading;
        threading.SetGlobalIntraOpNumThreads(options.shared_pool_threads);
        threading.SetGlobalInterOpNumThreads(1);
        threading.SetGlobalSpinControl(options.shared_pool_spinning ? 1 : 0);
        env = Ort::Env(static_cast<const OrtThreadingOptions*>(threading),
                       ORT_LOGGING_LEVEL_FATAL, "airlock");
      } else {
        env = Ort::Env(ORT_LOGGING_LEVEL_FATAL, "airlock");
      }
    });
    return env;
  }

  RuntimeOptions options;
  bool shared_pool;
  std::once_flag once;
  Ort::Env env{nullptr};
};

OnnxRuntime::OnnxRuntime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnnxRuntime::~OnnxRuntime() = default;

Result<std::unique_ptr<OnnxRuntime>> OnnxRuntime::Create(const RuntimeOptions& options) {
  try {
    return std::unique_ptr<OnnxRuntime>(new OnnxRuntime(std::make_unique<Impl>(options)));
  } catch (const Ort::Exception& e) {
    return Fail(OrtError(e, "cannot start ONNX Runtime"));
  }
}

std::string OnnxRuntime::Version() const { return Ort::GetVersionString(); }

Result<std::unique_ptr<InferenceBackend>> OnnxRuntime::Load(const std::filesystem::path& model,
                                                            const SessionConfig& config) {
  if (config.shared_pool && !impl_->shared_pool) {
    return Fail(ErrorCode::kInvalidArgument,
                "a session asks for the shared thread pool but the runtime has none");
  }
  try {
    Ort::SessionOptions options;
    if (config.shared_pool) {
      options.DisablePerSessionThreads();
    } else {
      options.SetIntraOpNumThreads(config.intra_op_threads);
      options.SetInterOpNumThreads(1);
      options.AddConfigEntry("session.intra_op.allow_spinning",
                             config.allow_spinning ? "1" : "0");
    }
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    if (!config.cpu_arena) {
      options.DisableCpuMemArena();
    }
    Ort::Session session(impl_->Env(), model.c_str(), options);
    Ort::AllocatorWithDefaultOptions allocator;
    ModelSignature sig;
    for (std::size_t i = 0; i < session.GetInputCount(); ++i) {
      std::string name = session.GetInputNameAllocated(i, allocator).get();
      AIRLOCK_ASSIGN_OR_RETURN(TensorSpec spec, SpecOf(name, session.GetInputTypeInfo(i), "input"));
      sig.inputs.push_back(std::move(spec));
    }
    for (std::size_t i = 0; i < session.GetOutputCount(); ++i) {
      std::string name = session.GetOutputNameAllocated(i, allocator).get();
      AIRLOCK_ASSIGN_OR_RETURN(TensorSpec spec,
                               SpecOf(name, session.GetOutputTypeInfo(i), "output"));
      sig.outputs.push_back(std::move(spec));
    }
    return std::unique_ptr<InferenceBackend>(new OrtBackend(std::move(session), std::move(sig)));
  } catch (const Ort::Exception& e) {
    return Fail(OrtError(e, "ONNX Runtime cannot load " + model.string()));
  }
}

}  // namespace airlock::runtime
