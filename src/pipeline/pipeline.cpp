#include "pipeline/pipeline.hpp"

#include <cmath>
#include <limits>
#include <set>
#include <string>

#include "pipeline/steps.hpp"

namespace airlock::pipeline {
namespace {

using nlohmann::json;
using runtime::DataType;

// Reads one step's parameters; every error names the step. Parameters not read are refused by
// Finish, so that a misspelt name fails at load instead of being ignored.
class StepReader {
 public:
  StepReader(const json& step, std::string where) : step_(step), where_(std::move(where)) {
    used_.insert("op");
  }

  tl::unexpected<Error> Bad(const std::string& what) const {
    return Fail(ErrorCode::kInvalidArgument, where_ + ": " + what);
  }
  bool Has(const std::string& key) const { return step_.contains(key); }

  Result<std::int64_t> Int(const std::string& key, std::int64_t min, std::int64_t max,
                           std::optional<std::int64_t> fallback = std::nullopt) {
    used_.insert(key);
    if (!step_.contains(key)) {
      if (fallback) {
        return *fallback;
      }
      return Bad("missing parameter \"" + key + "\"");
    }
    const json& v = step_[key];
    double d = 0;
    if (v.is_number_integer()) {
      d = v.is_number_unsigned() ? static_cast<double>(v.get<std::uint64_t>())
                                 : static_cast<double>(v.get<std::int64_t>());
    } else if (v.is_number_float() && std::trunc(v.get<double>()) == v.get<double>()) {
      d = v.get<double>();
    } else {
      return Bad("\"" + key + "\" must be an integer");
    }
    if (d < static_cast<double>(min) || d > static_cast<double>(max)) {
      return Bad("\"" + key + "\" must be between " + std::to_string(min) + " and " +
                 std::to_string(max) + ", not " + v.dump());
    }
    return static_cast<std::int64_t>(d);
  }

  Result<double> Number(const std::string& key, std::optional<double> fallback = std::nullopt) {
    used_.insert(key);
    if (!step_.contains(key)) {
      if (fallback) {
        return *fallback;
      }
      return Bad("missing parameter \"" + key + "\"");
    }
    const json& v = step_[key];
    if (!v.is_number() || !std::isfinite(v.get<double>())) {
      return Bad("\"" + key + "\" must be a finite number");
    }
    return v.get<double>();
  }

  Result<std::string> String(const std::string& key,
                             std::optional<std::string> fallback = std::nullopt) {
    used_.insert(key);
    if (!step_.contains(key)) {
      if (fallback) {
        return *fallback;
      }
      return Bad("missing parameter \"" + key + "\"");
    }
    if (!step_[key].is_string() || step_[key].get<std::string>().empty()) {
      return Bad("\"" + key + "\" must be a non-empty string");
    }
    return step_[key].get<std::string>();
  }

  Result<bool> Bool(const std::string& key, bool fallback) {
    used_.insert(key);
    if (!step_.contains(key)) {
      return fallback;
    }
    if (!step_[key].is_boolean()) {
      return Bad("\"" + key + "\" must be true or false");
    }
    return step_[key].get<bool>();
  }

  Result<std::vector<float>> Floats(const std::string& key) {
    used_.insert(key);
    if (!step_.contains(key)) {
      return Bad("missing parameter \"" + key + "\"");
    }
    const json& v = step_[key];
    std::vector<float> out;
    if (v.is_number()) {  // one value for every channel
      out.push_back(static_cast<float>(v.get<double>()));
    } else if (v.is_array() && !v.empty()) {
      for (const auto& e : v) {
        if (!e.is_number()) {
          return Bad("\"" + key + "\" must be a number or a list of numbers");
        }
        out.push_back(static_cast<float>(e.get<double>()));
      }
    } else {
      return Bad("\"" + key + "\" must be a number or a non-empty list of numbers");
    }
    for (float f : out) {
      if (!std::isfinite(f)) {
        return Bad("\"" + key + "\" must hold finite FP32 numbers");
      }
    }
    return out;
  }

  // A list of labels: the step's own, else the pipeline's.
  Result<std::vector<std::string>> Labels(const std::vector<std::string>& fallback) {
    used_.insert("labels");
    if (!step_.contains("labels")) {
      return fallback;
    }
    return ReadLabels(step_["labels"]);
  }

  Result<std::vector<std::string>> ReadLabels(const json& v) const {
    if (!v.is_array()) {
      return Bad("\"labels\" must be a list of strings");
    }
    std::vector<std::string> out;
    for (const auto& e : v) {
      if (!e.is_string()) {
        return Bad("\"labels\" must be a list of strings");
      }
      out.push_back(e.get<std::string>());
    }
    return out;
  }

  Status Finish() const {
    for (const auto& [key, value] : step_.items()) {
      if (!used_.contains(key)) {
        return Bad("unknown parameter \"" + key + "\"");
      }
    }
    return {};
  }

 private:
  const json& step_;
  std::string where_;
  std::set<std::string> used_;
};

// What the data looks like between pre-processing steps, tracked at parse time so that a step in
// the wrong place fails at load.
enum class Form {
  kRaw,       // nothing ran yet
  kImageHwc,  // a decoded picture, height × width × channels
  kImageChw,  // the same, channels first
  kNumbers,   // a signal or any other array of numbers
};

constexpr std::int64_t kMaxSide = 1 << 16;  // of a resize or crop

Result<steps::Pre> ParsePre(StepReader& r, const std::string& op, Form& form,
                            const runtime::TensorSpec& input, const Limits& limits, bool last) {
  auto need_image = [&]() -> Status {
    if (form != Form::kImageHwc && form != Form::kImageChw) {
      return r.Bad("needs a decoded image: put decode_image first");
    }
    return {};
  };
  if (op == "decode_image") {
    if (form != Form::kRaw) {
      return r.Bad("decode_image must be the first step");
    }
    steps::DecodeImage s;
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t ch, r.Int("channels", 1, 3, 3));
    if (ch == 2) {
      return r.Bad("\"channels\" must be 1 or 3");
    }
    s.channels = static_cast<int>(ch);
    form = Form::kImageHwc;
    return s;
  }
  if (op == "resize" || op == "center_crop") {
    AIRLOCK_RETURN_IF_ERROR(need_image());
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t w, r.Int("width", 1, kMaxSide));
    AIRLOCK_ASSIGN_OR_RETURN(std::int64_t h, r.Int("height", 1, kMaxSide));
    if (static_cast<std::uint64_t>(w * h) > limits.max_pixels) {
      return r.Bad(std::to_string(w) + "x" + std::to_string(h) + " is more than the limit of " +
                   std::to_string(limits.max_pixels) + " pixels");
    }
    if (op == "resize") {
      return steps::Resize{w, h};
    }
    return steps::CenterCrop{w, h};
  }
  if (op == "crop") {
    AIRLOCK_RETURN_IF_ERROR(need_image());
    steps::Crop s;
    AIRLOCK_ASSIGN_OR_RETURN(s.x, r.Int("x", 0, kMaxSide * 16));
    AIRLOCK_ASSIGN_OR_RETURN(s.y, r.Int("y", 0, kMaxSide * 16));
    AIRLOCK_ASSIGN_OR_RETURN(s.width, r.Int("width", 1, kMaxSide));
    AIRLOCK_ASSIGN_OR_RETURN(s.height, r.Int("height", 1, kMaxSide));
    return s;
  }
  if (op == "scale") {
    AIRLOCK_ASSIGN_OR_RETURN(double f, r.Number("factor"));
    if (!std::isfinite(static_cast<float>(f))) {
      return r.Bad("\"factor\" does not fit in FP32");
    }
    if (form == Form::kRaw) {
      form = Form::kNumbers;
    }
    return steps::Scale{static_cast<float>(f)};
  }
  if (op == "normalize") {
    steps::Normalize s;
    AIRLOCK_ASSIGN_OR_RETURN(s.mean, r.Floats("mean"));
    AIRLOCK_ASSIGN_OR_RETURN(s.std, r.Floats("std"));
    if (s.mean.size() != s.std.size()) {
      return r.Bad("\"mean\" and \"std\" must have the same length");
    }
    for (float v : s.std) {
      if (v == 0) {
        return r.Bad("\"std\" must not be 0");
      }
    }
    if (form == Form::kRaw) {
      form = Form::kNumbers;
    }
    return s;
  }
  if (op == "layout") {
    AIRLOCK_RETURN_IF_ERROR(need_image());
    AIRLOCK_ASSIGN_OR_RETURN(std::string from, r.String("from"));
    AIRLOCK_ASSIGN_OR_RETURN(std::string to, r.String("to"));
    Form want_from = from == "HWC" ? Form::kImageHwc : Form::kImageChw;
    if ((from != "HWC" && from != "CHW") || (to != "HWC" && to != "CHW") || from == to) {
      return r.Bad("supports from HWC to CHW and from CHW to HWC, not from " + from + " to " + to);
    }
    if (form != want_from) {
      return r.Bad("the image is in " +
                   std::string(form == Form::kImageHwc ? "HWC" : "CHW") + " layout, not " + from);
    }
    form = to == "CHW" ? Form::kImageChw : Form::kImageHwc;
    return steps::Layout{to == "CHW"};
  }
  if (op == "cast") {
    AIRLOCK_ASSIGN_OR_RETURN(std::string name, r.String("dtype", std::string(runtime::DataTypeName(input.dtype))));
    auto dtype = runtime::ParseDataType(name);
    if (!dtype || *dtype == DataType::kBytes) {
      return r.Bad("\"dtype\" must be a numeric datatype (FP32, UINT8, …), not " + name);
    }
    if (*dtype != input.dtype) {
      return r.Bad("casts to " + name + " but the model's input \"" + input.name + "\" is " +
                   std::string(runtime::DataTypeName(input.dtype)));
    }
    if (!last) {
      return r.Bad("cast must be the last pre-processing step");
    }
    return steps::Cast{*dtype};
  }
  if (op == "window") {
    if (form != Form::kRaw) {
      return r.Bad("window must be the first step (it cuts the raw signal)");
    }
    steps::Window s;
    AIRLOCK_ASSIGN_OR_RETURN(s.size, r.Int("size", 1, 1 << 24));
    AIRLOCK_ASSIGN_OR_RETURN(s.hop, r.Int("hop", 1, 1 << 24, s.size));
    form = Form::kNumbers;
    return s;
  }
  return r.Bad("unknown op \"" + op + "\"");
}

Result<std::string> OutputName(StepReader& r, const std::string& key,
                               const std::vector<runtime::TensorSpec>& specs, const char* what) {
  if (!r.Has(key) && specs.size() == 1) {
    return r.String(key, specs[0].name);
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string name, r.String(key));
  if (!specs.empty()) {
    bool found = false;
    std::vector<std::string> names;
    for (const auto& s : specs) {
      found = found || s.name == name;
      names.push_back(s.name);
    }
    if (!found) {
      std::string list;
      for (const auto& n : names) {
        list += (list.empty() ? "" : ", ") + n;
      }
      return r.Bad("the model has no " + std::string(what) + " \"" + name + "\" (it has " + list +
                   ")");
    }
  }
  return name;
}

// The threshold value: the step's own, else the pipeline's thresholds[above].
Result<double> ThresholdValue(StepReader& r, const json& thresholds, const std::string& above) {
  if (r.Has("value")) {
    return r.Number("value");
  }
  if (thresholds.is_object() && thresholds.contains(above) && thresholds[above].is_number()) {
    return thresholds[above].get<double>();
  }
  return r.Bad("missing parameter \"value\" (and no thresholds." + above + " in the pipeline)");
}

// Labels must match the classes when the signature fixes how many there are.
Status CheckLabelCount(StepReader& r, const std::string& tensor,
                       const std::vector<std::string>& labels, const runtime::ModelSignature& sig) {
  for (const auto& spec : sig.outputs) {
    if (spec.name == tensor && !labels.empty() && !spec.shape.empty() && spec.shape.back() > 0 &&
        static_cast<std::size_t>(spec.shape.back()) != labels.size()) {
      return r.Bad(std::to_string(labels.size()) + " labels for the " +
                   std::to_string(spec.shape.back()) + " classes of \"" + tensor + "\"");
    }
  }
  return {};
}

Result<steps::Post> ParsePost(StepReader& r, const std::string& op,
                              const runtime::ModelSignature& sig,
                              const std::vector<std::string>& labels, const json& thresholds) {
  if (op == "softmax") {
    steps::Softmax s;
    AIRLOCK_ASSIGN_OR_RETURN(s.tensor, OutputName(r, "tensor", sig.outputs, "output"));
    return s;
  }
  if (op == "argmax") {
    steps::Argmax s;
    AIRLOCK_ASSIGN_OR_RETURN(s.tensor, OutputName(r, "tensor", sig.outputs, "output"));
    AIRLOCK_ASSIGN_OR_RETURN(s.labels, r.Labels(labels));
    AIRLOCK_RETURN_IF_ERROR(CheckLabelCount(r, s.tensor, s.labels, sig));
    return s;
  }
  if (op == "top_k") {
    steps::TopK s;
    AIRLOCK_ASSIGN_OR_RETURN(s.tensor, OutputName(r, "tensor", sig.outputs, "output"));
    AIRLOCK_ASSIGN_OR_RETURN(s.k, r.Int("k", 1, 1000));
    AIRLOCK_ASSIGN_OR_RETURN(s.labels, r.Labels(labels));
    AIRLOCK_RETURN_IF_ERROR(CheckLabelCount(r, s.tensor, s.labels, sig));
    return s;
  }
  if (op == "threshold") {
    steps::Threshold s;
    AIRLOCK_ASSIGN_OR_RETURN(s.tensor, OutputName(r, "tensor", sig.outputs, "output"));
    AIRLOCK_ASSIGN_OR_RETURN(s.above, r.String("above"));
    AIRLOCK_ASSIGN_OR_RETURN(s.below, r.String("below"));
    AIRLOCK_ASSIGN_OR_RETURN(s.value, ThresholdValue(r, thresholds, s.above));
    if (r.Has("index")) {
      AIRLOCK_ASSIGN_OR_RETURN(s.index, r.Int("index", 0, std::numeric_limits<std::int32_t>::max()));
    }
    return s;
  }
  if (op == "nms") {
    steps::Nms s;
    AIRLOCK_ASSIGN_OR_RETURN(s.tensor, OutputName(r, "tensor", sig.outputs, "output"));
    AIRLOCK_ASSIGN_OR_RETURN(s.iou, r.Number("iou", 0.45));
    AIRLOCK_ASSIGN_OR_RETURN(s.score_threshold, r.Number("score_threshold", 0.25));
    if (s.iou < 0 || s.iou > 1) {
      return r.Bad("\"iou\" must be between 0 and 1");
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string format, r.String("box_format", "cxcywh"));
    if (format == "xyxy") {
      s.box_format = steps::BoxFormat::kXyxy;
    } else if (format == "xywh") {
      s.box_format = steps::BoxFormat::kXywh;
    } else if (format == "cxcywh") {
      s.box_format = steps::BoxFormat::kCxcywh;
    } else {
      return r.Bad("\"box_format\" must be xyxy, xywh or cxcywh, not " + format);
    }
    AIRLOCK_ASSIGN_OR_RETURN(s.objectness, r.Bool("objectness", true));
    AIRLOCK_ASSIGN_OR_RETURN(s.class_agnostic, r.Bool("class_agnostic", false));
    AIRLOCK_ASSIGN_OR_RETURN(s.max_detections, r.Int("max_detections", 1, 10000, 100));
    AIRLOCK_ASSIGN_OR_RETURN(s.labels, r.Labels(labels));
    return s;
  }
  if (op == "reconstruction_error") {
    steps::ReconstructionError s;
    AIRLOCK_ASSIGN_OR_RETURN(s.input, OutputName(r, "input", sig.inputs, "input"));
    AIRLOCK_ASSIGN_OR_RETURN(s.output, OutputName(r, "output", sig.outputs, "output"));
    AIRLOCK_ASSIGN_OR_RETURN(s.above, r.String("above"));
    AIRLOCK_ASSIGN_OR_RETURN(s.below, r.String("below"));
    AIRLOCK_ASSIGN_OR_RETURN(s.value, ThresholdValue(r, thresholds, s.above));
    return s;
  }
  return r.Bad("unknown op \"" + op + "\"");
}

Result<std::vector<std::string>> TopLevelStrings(const json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.contains(key)) {
    return out;
  }
  if (!j[key].is_array()) {
    return Fail(ErrorCode::kInvalidArgument, std::string("pipeline \"") + key +
                                                 "\" must be a list of strings");
  }
  for (const auto& e : j[key]) {
    if (!e.is_string()) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("pipeline \"") + key + "\" must be a list of strings");
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<const json*> StepList(const json& j, const char* key) {
  static const json kEmpty = json::array();
  if (!j.contains(key) || j[key].is_null()) {
    return &kEmpty;
  }
  if (!j[key].is_array()) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("pipeline \"") + key + "\" must be a list of steps");
  }
  return &j[key];
}

Result<std::string> StepOp(const json& step, const std::string& where) {
  if (!step.is_object() || !step.contains("op") || !step["op"].is_string()) {
    return Fail(ErrorCode::kInvalidArgument, where + ": a step must be an object with an \"op\"");
  }
  return step["op"].get<std::string>();
}

}  // namespace

Result<Pipeline> Pipeline::Parse(const json& j, const runtime::ModelSignature& sig,
                                 const Limits& limits) {
  if (!j.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "pipeline.json must be an object");
  }
  if (j.contains("schema") && j["schema"] != "airlock.pipeline.v1") {
    return Fail(ErrorCode::kInvalidArgument,
                "pipeline.json has schema " + j["schema"].dump() + ", not airlock.pipeline.v1");
  }
  auto impl = std::make_shared<Impl>();
  impl->sig = sig;
  impl->limits = limits;
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<std::string> labels, TopLevelStrings(j, "labels"));
  AIRLOCK_ASSIGN_OR_RETURN(impl->severity, TopLevelStrings(j, "severity"));
  if (!j.contains("severity")) {
    impl->severity = labels;
  }
  json thresholds = j.contains("thresholds") ? j["thresholds"] : json::object();
  if (!thresholds.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "pipeline \"thresholds\" must be an object");
  }

  AIRLOCK_ASSIGN_OR_RETURN(const json* pre, StepList(j, "preprocess"));
  if (!pre->empty() && sig.inputs.size() != 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "pre-processing steps need a model with one input; this one has " +
                    std::to_string(sig.inputs.size()));
  }
  Form form = Form::kRaw;
  for (std::size_t i = 0; i < pre->size(); ++i) {
    const json& step = (*pre)[i];
    std::string where = "preprocess step " + std::to_string(i);
    AIRLOCK_ASSIGN_OR_RETURN(std::string op, StepOp(step, where));
    StepReader r(step, where + " (" + op + ")");
    AIRLOCK_ASSIGN_OR_RETURN(steps::Pre s,
                             ParsePre(r, op, form, sig.inputs[0], limits, i + 1 == pre->size()));
    AIRLOCK_RETURN_IF_ERROR(r.Finish());
    if (const auto* w = std::get_if<steps::Window>(&s)) {
      impl->window_hop = w->hop;
    }
    impl->pre.push_back(std::move(s));
    impl->pre_ops.push_back(op);
  }

  AIRLOCK_ASSIGN_OR_RETURN(const json* post, StepList(j, "postprocess"));
  for (std::size_t i = 0; i < post->size(); ++i) {
    const json& step = (*post)[i];
    std::string where = "postprocess step " + std::to_string(i);
    AIRLOCK_ASSIGN_OR_RETURN(std::string op, StepOp(step, where));
    StepReader r(step, where + " (" + op + ")");
    AIRLOCK_ASSIGN_OR_RETURN(steps::Post s, ParsePost(r, op, sig, labels, thresholds));
    AIRLOCK_RETURN_IF_ERROR(r.Finish());
    impl->post.push_back(std::move(s));
    impl->post_ops.push_back(op);
  }
  return Pipeline(std::move(impl));
}

bool Pipeline::has_preprocess() const { return !impl_->pre.empty(); }
bool Pipeline::has_postprocess() const { return !impl_->post.empty(); }

Result<std::vector<runtime::Tensor>> Pipeline::Preprocess(const Input& in) const {
  auto t = RunPreprocess(*impl_, in);
  if (!t) {
    return Fail(std::move(t.error()).WithContext("while pre-processing " +
                                                 (in.name.empty() ? "the input" : in.name)));
  }
  std::vector<runtime::Tensor> out;
  out.push_back(std::move(*t));
  return out;
}

Result<json> Pipeline::Postprocess(const std::vector<runtime::Tensor>& inputs,
                                   const std::vector<runtime::Tensor>& outputs) const {
  return WithContext(RunPostprocess(*impl_, inputs, outputs), "while post-processing");
}

Result<json> Pipeline::Run(const Input& in, runtime::InferenceBackend& backend) const {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<runtime::Tensor> inputs, Preprocess(in));
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<runtime::Tensor> outputs, backend.Run(inputs));
  AIRLOCK_ASSIGN_OR_RETURN(json result, Postprocess(inputs, outputs));
  if (!in.name.empty()) {
    result["name"] = AsciiText(in.name);
  }
  return result;
}

}  // namespace airlock::pipeline
