// Running the post-processing steps: the model's outputs -> the result JSON.
//
// Steps read tensors as FP64 copies (softmax rewrites its copy for the steps after it) and write
// fields into one JSON object per batch row; docs/pipelines.md describes the result.

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "pipeline/steps.hpp"

namespace airlock::pipeline {
namespace {

using nlohmann::json;
using runtime::Tensor;

struct Values {
  std::vector<std::int64_t> shape;
  std::vector<double> v;
};

// A tensor's rows: the first dimension is the batch.
struct Rows {
  std::size_t count = 0;
  std::size_t length = 0;  // values per row
};

std::size_t Product(const std::vector<std::int64_t>& shape, std::size_t from) {
  std::size_t n = 1;
  for (std::size_t i = from; i < shape.size(); ++i) {
    n *= static_cast<std::size_t>(shape[i]);
  }
  return n;
}

// Class scores: rank 0 and 1 are one row; otherwise shape[0] rows of everything else.
Rows ClassRows(const Values& t) {
  if (t.shape.size() <= 1) {
    return {1, t.v.size()};
  }
  return {static_cast<std::size_t>(t.shape[0]), Product(t.shape, 1)};
}

// Scores: rank 0 is one row, rank 1 one row per value, otherwise shape[0] rows.
Rows ScoreRows(const Values& t) {
  if (t.shape.empty()) {
    return {1, 1};
  }
  if (t.shape.size() == 1) {
    return {t.v.size(), 1};
  }
  return {static_cast<std::size_t>(t.shape[0]), Product(t.shape, 1)};
}

class PostRun {
 public:
  PostRun(const Pipeline::Impl& p, const std::vector<Tensor>& inputs,
      const std::vector<Tensor>& outputs)
      : p_(p), inputs_(inputs), outputs_(outputs) {}

  Result<json> Execute() {
    for (std::size_t i = 0; i < p_.post.size(); ++i) {
      Status st = std::visit([this](const auto& s) { return Step(s); }, p_.post[i]);
      if (!st) {
        return Fail(std::move(st.error())
                        .WithContext("in postprocess step " + std::to_string(i) + " (" +
                                     p_.post_ops[i] + ")"));
      }
    }
    return Assemble();
  }

 private:
  Result<Values*> Get(const std::string& name, bool input) {
    std::string key = (input ? "in:" : "out:") + name;
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      return &it->second;
    }
    const auto& list = input ? inputs_ : outputs_;
    for (const Tensor& t : list) {
      if (t.name != name) {
        continue;
      }
      if (t.dtype == runtime::DataType::kBytes) {
        return Fail(ErrorCode::kInvalidArgument, "tensor \"" + name + "\" holds strings");
      }
      AIRLOCK_RETURN_IF_ERROR(t.CheckConsistent());
      for (std::int64_t d : t.shape) {
        if (d < 0) {
          return Fail(ErrorCode::kInvalidArgument, "tensor \"" + name + "\" has a negative dimension");
        }
      }
      Values v;
      v.shape = t.shape;
      v.v.resize(static_cast<std::size_t>(t.ElementCount()));
      for (std::size_t i = 0; i < v.v.size(); ++i) {
        v.v[i] = t.ValueAsDouble(static_cast<std::int64_t>(i));
      }
      return &cache_.emplace(key, std::move(v)).first->second;
    }
    return Fail(ErrorCode::kInvalidArgument, std::string("the model ") +
                                                 (input ? "inputs have" : "outputs have") +
                                                 " no tensor \"" + name + "\"");
  }

  // Every step must see the same number of rows.
  Status UseRows(std::size_t n, const std::string& tensor) {
    if (!rows_) {
      rows_ = std::vector<json>(n, json::object());
    } else if (rows_->size() != n) {
      return Fail(ErrorCode::kInvalidArgument,
                  "tensor \"" + tensor + "\" has " + std::to_string(n) +
                      " rows but an earlier step saw " + std::to_string(rows_->size()));
    }
    return {};
  }

  static Status NotNan(double v, const std::string& tensor, std::size_t row) {
    if (std::isnan(v)) {
      return Fail(ErrorCode::kModel, "tensor \"" + tensor + "\" row " + std::to_string(row) +
                                         " holds NaN; no verdict");
    }
    return {};
  }

  static std::string Label(const std::vector<std::string>& labels, std::size_t i) {
    return i < labels.size() ? labels[i] : std::to_string(i);
  }

  Status Step(const steps::Softmax& s) {
    AIRLOCK_ASSIGN_OR_RETURN(Values * t, Get(s.tensor, false));
    Rows r = ClassRows(*t);
    for (std::size_t row = 0; row < r.count; ++row) {
      double* x = t->v.data() + row * r.length;
      double max = -INFINITY;
      for (std::size_t i = 0; i < r.length; ++i) {
        max = std::max(max, x[i]);
      }
      double sum = 0;
      for (std::size_t i = 0; i < r.length; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
      }
      for (std::size_t i = 0; i < r.length; ++i) {
        x[i] /= sum;
      }
    }
    return {};
  }

  Status Step(const steps::Argmax& s) {
    AIRLOCK_ASSIGN_OR_RETURN(Values * t, Get(s.tensor, false));
    Rows r = ClassRows(*t);
    AIRLOCK_RETURN_IF_ERROR(UseRows(r.count, s.tensor));
    if (r.length == 0) {
      return Fail(ErrorCode::kInvalidArgument, "tensor \"" + s.tensor + "\" has empty rows");
    }
    for (std::size_t row = 0; row < r.count; ++row) {
      const double* x = t->v.data() + row * r.length;
      std::size_t best = 0;
      for (std::size_t i = 0; i < r.length; ++i) {
        AIRLOCK_RETURN_IF_ERROR(NotNan(x[i], s.tensor, row));
        if (x[i] > x[best]) {
          best = i;
        }
      }
      json& out = (*rows_)[row];
      out["label"] = Label(s.labels, best);
      out["index"] = best;
      out["score"] = x[best];
      out["verdict"] = out["label"];
    }
    return {};
  }

  Status Step(const steps::TopK& s) {
    AIRLOCK_ASSIGN_OR_RETURN(Values * t, Get(s.tensor, false));
    Rows r = ClassRows(*t);
    AIRLOCK_RETURN_IF_ERROR(UseRows(r.count, s.tensor));
    std::size_t k = std::min(static_cast<std::size_t>(s.k), r.length);
    for (std::size_t row = 0; row < r.count; ++row) {
      const double* x = t->v.data() + row * r.length;
      for (std::size_t i = 0; i < r.length; ++i) {
        AIRLOCK_RETURN_IF_ERROR(NotNan(x[i], s.tensor, row));
      }
      std::vector<std::size_t> order(r.length);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                        [x](std::size_t a, std::size_t b) {
                          return x[a] > x[b] || (x[a] == x[b] && a < b);
                        });
      json list = json::array();
      for (std::size_t i = 0; i < k; ++i) {
        list.push_back({{"label", Label(s.labels, order[i])},
                        {"index", order[i]},
                        {"score", x[order[i]]}});
      }
      (*rows_)[row]["top_k"] = std::move(list);
    }
    return {};
  }

  Status Step(const steps::Threshold& s) {
    AIRLOCK_ASSIGN_OR_RETURN(Values * t, Get(s.tensor, false));
    Rows r = ScoreRows(*t);
    AIRLOCK_RETURN_IF_ERROR(UseRows(r.count, s.tensor));
    std::size_t index = 0;
    if (s.index) {
      index = static_cast<std::size_t>(*s.index);
    } else if (r.length != 1 && r.count > 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "tensor \"" + s.tensor + "\" has rows of " + std::to_string(r.length) +
                      " values: say which one with \"index\"");
    }
    if (index >= r.length && r.count > 0) {
      return Fail(ErrorCode::kInvalidArgument, "index " + std::to_string(index) +
                                                   " is outside the rows of " +
                                                   std::to_string(r.length) + " values of \"" +
                                                   s.tensor + "\"");
    }
    for (std::size_t row = 0; row < r.count; ++row) {
      double v = t->v[row * r.length + index];
      AIRLOCK_RETURN_IF_ERROR(NotNan(v, s.tensor, row));
      json& out = (*rows_)[row];
      out["score"] = v;
      out["verdict"] = v > s.value ? s.above : s.below;
    }
    return {};
  }

  Status Step(const steps::ReconstructionError& s) {
    AIRLOCK_ASSIGN_OR_RETURN(Values * in, Get(s.input, true));
    AIRLOCK_ASSIGN_OR_RETURN(Values * out, Get(s.output, false));
    if (in->shape != out->shape) {
      return Fail(ErrorCode::kInvalidArgument,
                  "input \"" + s.input + "\" " + runtime::ShapeToString(in->shape) +
                      " and output \"" + s.output + "\" " + runtime::ShapeToString(out->shape) +
                      " differ in shape");
    }
    Rows r = ClassRows(*in);
    AIRLOCK_RETURN_IF_ERROR(UseRows(r.count, s.output));
    for (std::size_t row = 0; row < r.count; ++row) {
      double sum = 0;
      for (std::size_t i = row * r.length; i < (row + 1) * r.length; ++i) {
        double d = out->v[i] - in->v[i];
        sum += d * d;
      }
      double mse = r.length == 0 ? 0.0 : sum / static_cast<double>(r.length);
      AIRLOCK_RETURN_IF_ERROR(NotNan(mse, s.output, row));
      json& o = (*rows_)[row];
      o["score"] = mse;
      o["verdict"] = mse > s.value ? s.above : s.below;
    }
    return {};
  }

  struct Box {
    double x1, y1, x2, y2, score;
    std::int64_t cls;  // -1 without class scores
  };

  static double Iou(const Box& a, const Box& b) {
    double iw = std::max(0.0, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
    double ih = std::max(0.0, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
    double inter = iw * ih;
    double area_a = std::max(0.0, a.x2 - a.x1) * std::max(0.0, a.y2 - a.y1);
    double area_b = std::max(0.0, b.x2 - b.x1) * std::max(0.0, b.y2 - b.y1);
    double uni = area_a + area_b - inter;
    return uni > 0 ? inter / uni : 0.0;
  }

  Status Step(const steps::Nms& s) {
    AIRLOCK_ASSIGN_OR_RETURN(Values * t, Get(s.tensor, false));
    if (t->shape.size() != 2 && t->shape.size() != 3) {
      return Fail(ErrorCode::kInvalidArgument,
                  "nms needs boxes [n, values] or [batch, n, values], not " +
                      runtime::ShapeToString(t->shape));
    }
    std::size_t rank = t->shape.size();
    auto d = static_cast<std::size_t>(t->shape[rank - 1]);
    auto n = static_cast<std::size_t>(t->shape[rank - 2]);
    std::size_t batch = rank == 3 ? static_cast<std::size_t>(t->shape[0]) : 1;
    if (d < 5) {
      return Fail(ErrorCode::kInvalidArgument,
                  "nms needs at least 5 values per box (4 coordinates and a score), not " +
                      std::to_string(d));
    }
    AIRLOCK_RETURN_IF_ERROR(UseRows(batch, s.tensor));
    std::size_t first_class = s.objectness ? 5 : 4;
    for (std::size_t row = 0; row < batch; ++row) {
      std::vector<Box> boxes;
      for (std::size_t j = 0; j < n; ++j) {
        const double* x = t->v.data() + (row * n + j) * d;
        Box b{};
        b.cls = -1;
        double cls_score = 1;
        if (d > first_class) {
          std::size_t best = first_class;
          for (std::size_t c = first_class; c < d; ++c) {
            if (x[c] > x[best]) {
              best = c;
            }
          }
          b.cls = static_cast<std::int64_t>(best - first_class);
          cls_score = x[best];
        }
        b.score = s.objectness ? x[4] * cls_score : cls_score;
        if (!(b.score >= s.score_threshold)) {  // also drops NaN
          continue;
        }
        switch (s.box_format) {
          case steps::BoxFormat::kXyxy:
            b.x1 = x[0], b.y1 = x[1], b.x2 = x[2], b.y2 = x[3];
            break;
          case steps::BoxFormat::kXywh:
            b.x1 = x[0], b.y1 = x[1], b.x2 = x[0] + x[2], b.y2 = x[1] + x[3];
            break;
          case steps::BoxFormat::kCxcywh:
            b.x1 = x[0] - x[2] / 2, b.y1 = x[1] - x[3] / 2;
            b.x2 = x[0] + x[2] / 2, b.y2 = x[1] + x[3] / 2;
            break;
        }
        if (std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) &&
            std::isfinite(b.y2)) {
          boxes.push_back(b);
        }
      }
      std::stable_sort(boxes.begin(), boxes.end(),
                       [](const Box& a, const Box& b) { return a.score > b.score; });
      std::vector<Box> kept;
      for (const Box& b : boxes) {
        if (kept.size() >= static_cast<std::size_t>(s.max_detections)) {
          break;
        }
        bool suppressed = false;
        for (const Box& k : kept) {
          if ((s.class_agnostic || k.cls == b.cls) && Iou(k, b) > s.iou) {
            suppressed = true;
            break;
          }
        }
        if (!suppressed) {
          kept.push_back(b);
        }
      }
      json list = json::array();
      for (const Box& b : kept) {
        json det = {{"box", {b.x1, b.y1, b.x2, b.y2}}, {"score", b.score}};
        if (b.cls >= 0) {
          det["class"] = b.cls;
          det["label"] = Label(s.labels, static_cast<std::size_t>(b.cls));
        }
        list.push_back(std::move(det));
      }
      (*rows_)[row]["detections"] = std::move(list);
    }
    return {};
  }

  // The severity of a verdict: its place in the severity list; unlisted verdicts are worse than
  // every listed one.
  std::size_t Severity(const json& row) const {
    const std::string& v = row["verdict"].get_ref<const std::string&>();
    auto it = std::find(p_.severity.begin(), p_.severity.end(), v);
    return static_cast<std::size_t>(it - p_.severity.begin());
  }

  json Assemble() {
    std::vector<json> rows = rows_ ? std::move(*rows_) : std::vector<json>{};
    if (rows.size() == 1) {
      return std::move(rows[0]);
    }
    json result = json::object();
    std::optional<std::size_t> worst;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (p_.window_hop) {
        rows[i]["start"] = static_cast<std::int64_t>(i) * *p_.window_hop;
      }
      if (!rows[i].contains("verdict")) {
        continue;
      }
      if (!worst) {
        worst = i;
        continue;
      }
      std::size_t a = Severity(rows[i]), b = Severity(rows[*worst]);
      bool scored = rows[i].contains("score") && rows[*worst].contains("score");
      if (a > b || (a == b && scored &&
                    rows[i]["score"].get<double>() > rows[*worst]["score"].get<double>())) {
        worst = i;
      }
    }
    if (worst) {
      const json& w = rows[*worst];
      result["verdict"] = w["verdict"];
      result["worst_row"] = *worst;
      for (const char* key : {"label", "score"}) {
        if (w.contains(key)) {
          result[key] = w[key];
        }
      }
    }
    result["rows"] = std::move(rows);
    return result;
  }

  const Pipeline::Impl& p_;
  const std::vector<Tensor>& inputs_;
  const std::vector<Tensor>& outputs_;
  std::map<std::string, Values> cache_;
  std::optional<std::vector<json>> rows_;
};

json RawOutputs(const std::vector<Tensor>& outputs) {
  json all = json::object();
  for (const Tensor& t : outputs) {
    json data = json::array();
    if (t.dtype == runtime::DataType::kBytes) {
      for (const auto& s : t.strings) {
        data.push_back(AsciiText(s));
      }
    } else if (t.CheckConsistent()) {
      for (std::int64_t i = 0; i < t.ElementCount(); ++i) {
        data.push_back(t.ValueAsDouble(i));
      }
    }
    all[t.name] = {{"datatype", runtime::DataTypeName(t.dtype)}, {"shape", t.shape}, {"data", data}};
  }
  return {{"outputs", all}};
}

}  // namespace

Result<json> RunPostprocess(const Pipeline::Impl& p, const std::vector<Tensor>& inputs,
                            const std::vector<Tensor>& outputs) {
  if (p.post.empty()) {
    return RawOutputs(outputs);
  }
  return PostRun(p, inputs, outputs).Execute();
}

}  // namespace airlock::pipeline
