// The simulated HDL-64E: beam layout, ray casting through the street grid,
// surface response (remission, glass, porous foliage), noise and sweeps.
#include "lattice/sim/lidar_scene.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/error.hpp"
#include "sim/scene_geometry.hpp"
#include "sim/street_scene.hpp"

namespace lattice::sim {
namespace {

using detail::Hit;
using detail::k_inf;
using detail::k_pi;
using detail::key_normal;
using detail::key_uniform;
using detail::Material;
using detail::Primitive;
using detail::Scene;
using detail::Vec3;

constexpr const char* k_op = "simulate_lidar_scan";

// Slots of the per-ray random key (detail::key_uniform / key_normal).
enum : std::uint64_t {
  k_slot_dropout = 0,
  k_slot_range = 1,      // and 2
  k_slot_remission = 3,  // and 4
  k_slot_material = 5,
};

void validate(const LidarSceneOptions& o) {
  check(o.beams >= 1 && o.beams <= 128, k_op, "beams", "must be in [1, 128] (got ", o.beams, ")");
  check(o.azimuth_steps >= 1 && o.azimuth_steps <= 100000, k_op, "azimuth_steps", "must be in [1, 100000] (got ",
        o.azimuth_steps, ")");
  check(o.sweeps >= 1 && o.sweeps <= 1000, k_op, "sweeps", "must be in [1, 1000] (got ", o.sweeps, ")");
  const std::pair<const char*, double> reals[] = {
      {"min_range", o.min_range}, {"max_range", o.max_range},         {"range_noise", o.range_noise},
      {"dropout", o.dropout},     {"sensor_height", o.sensor_height}, {"sweep_spacing", o.sweep_spacing}};
  for (const auto& [name, value] : reals) check(std::isfinite(value), k_op, name, "must be finite (got ", value, ")");
  check(o.min_range > 0, k_op, "min_range", "must be positive (got ", o.min_range, ")");
  check(o.max_range > o.min_range && o.max_range <= 1000.0, k_op, "max_range", "must be greater than min_range (",
        o.min_range, ") and at most 1000 m (got ", o.max_range, ")");
  check(o.range_noise >= 0 && o.range_noise <= 1.0, k_op, "range_noise", "must be in [0, 1] m (got ", o.range_noise,
        ")");
  check(o.dropout >= 0 && o.dropout < 1, k_op, "dropout", "must be in [0, 1) (got ", o.dropout, ")");
  check(o.sensor_height > 0 && o.sensor_height <= 10.0, k_op, "sensor_height", "must be in (0, 10] m (got ",
        o.sensor_height, ")");
  check(o.sweep_spacing >= 0 && o.sweep_spacing <= 1000.0, k_op, "sweep_spacing", "must be in [0, 1000] m (got ",
        o.sweep_spacing, ")");
}

struct Beam {
  double cos_elevation, sin_elevation;
  double azimuth_offset;  // radians, fixed per laser like a calibration table
};

// HDL-64E: an upper block of 32 lasers from +2.0 to -8.33 deg (1/3 deg apart)
// and a lower block of 32 from -8.83 to -24.9 deg (about 1/2 deg apart).
// Other beam counts split the same two spans evenly. Beam 0 is the highest.
std::vector<Beam> make_beams(int count, double azimuth_step) {
  const int upper = (count + 1) / 2, lower = count - upper;
  auto spread = [](int i, int n, double top, double bottom) {
    return n == 1 ? 0.5 * (top + bottom) : top + (bottom - top) * i / (n - 1);
  };
  std::vector<Beam> beams;
  for (int b = 0; b < count; ++b) {
    const double deg = b < upper ? spread(b, upper, 2.0, -8.33) : spread(b - upper, lower, -8.83, -24.9);
    const double rad = deg * k_pi / 180.0;
    const double offset =
        (key_uniform(detail::hash_key({0x4844'4c36'3445ull, static_cast<std::uint64_t>(b)}), 0) - 0.5) * azimuth_step;
    beams.push_back({std::cos(rad), std::sin(rad), offset});
  }
  return beams;
}

struct TraceHit {
  double t = 0;
  Vec3 normal;
  std::int64_t prim = -1;  // -1: the road plane
};

// Nearest surface along o + t d, t <= t_limit: walks the grid cells the ray's
// ground track crosses, testing their primitives, and stops once the nearest
// hit so far lies before the current cell's exit. Porous volumes let the ray
// pass or return from inside, decided by hashing the ray key with the
// primitive's uid so the answer is the same whichever cell tests it.
// `mailbox` (one entry per primitive, per thread) holds the stamp of the last
// ray that tested each primitive: big solids span many cells, and the answer
// does not change from cell to cell.
bool trace(const Scene& scene, const Vec3& o, const Vec3& d, double t_limit, std::uint64_t ray_key,
           std::vector<std::uint32_t>& mailbox, std::uint32_t stamp, TraceHit& out) {
  const double t_ground = d.z < 0 ? (scene.layout.road_z - o.z) / d.z : k_inf;
  double best_t = std::min(t_limit, t_ground);
  const double t_max = best_t;
  std::int64_t best = -1;
  std::uint64_t best_uid = 0;
  Vec3 best_normal;

  const double cell = scene.cell_size;
  int ix = static_cast<int>(std::floor((o.x - scene.grid_x0) / cell));
  int iy = static_cast<int>(std::floor((o.y - scene.grid_y0) / cell));
  const bool inside = ix >= 0 && ix < scene.grid_nx && iy >= 0 && iy < scene.grid_ny;
  if (inside) {
    const int step_x = d.x > 0 ? 1 : -1, step_y = d.y > 0 ? 1 : -1;
    const bool moves_x = std::fabs(d.x) > 1e-15, moves_y = std::fabs(d.y) > 1e-15;
    double t_next_x = moves_x ? ((ix + (d.x > 0 ? 1 : 0)) * cell + scene.grid_x0 - o.x) / d.x : k_inf;
    double t_next_y = moves_y ? ((iy + (d.y > 0 ? 1 : 0)) * cell + scene.grid_y0 - o.y) / d.y : k_inf;
    const double dt_x = moves_x ? cell / std::fabs(d.x) : k_inf, dt_y = moves_y ? cell / std::fabs(d.y) : k_inf;
    while (true) {
      const std::size_t c = static_cast<std::size_t>(iy) * static_cast<std::size_t>(scene.grid_nx) + ix;
      for (std::uint32_t i = scene.cell_begin[c]; i < scene.cell_begin[c + 1]; ++i) {
        const std::uint32_t k = scene.cell_items[i];
        if (mailbox[k] == stamp) continue;
        mailbox[k] = stamp;
        const Primitive& p = scene.prims[k];
        Hit h;
        if (!detail::intersect(p, scene.terrain, o, d, h) || h.t > best_t) continue;
        double t = h.t;
        if (p.material == Material::porous) {
          const std::uint64_t key = detail::mix64(ray_key ^ p.uid);
          if (key_uniform(key, 0) < p.porosity) continue;
          t += std::min(-p.depth * std::log(1.0 - key_uniform(key, 1)), h.t_out - h.t);
        }
        if (t < best_t || (t == best_t && best >= 0 && p.uid < best_uid)) {
          best_t = t;
          best = k;
          best_uid = p.uid;
          best_normal = h.normal;
        }
      }
      const double t_exit = std::min(t_next_x, t_next_y);
      if (best_t <= t_exit || t_exit >= t_max) break;
      if (t_next_x < t_next_y) {
        ix += step_x;
        t_next_x += dt_x;
        if (ix < 0 || ix >= scene.grid_nx) break;
      } else {
        iy += step_y;
        t_next_y += dt_y;
        if (iy < 0 || iy >= scene.grid_ny) break;
      }
    }
  }
  if (best >= 0) {
    out = {best_t, best_normal, best};
    return true;
  }
  if (t_ground <= t_limit) {
    out = {t_ground, {0, 0, 1}, -1};
    return true;
  }
  return false;
}

double positive_fmod(double v, double m) {
  const double r = std::fmod(v, m);
  return r < 0 ? r + m : r;
}

// Building walls: a grid of windows per floor. Glass loses a share of the
// returns; the rest come from the recessed frame or the room behind.
bool facade_response(const Primitive& p, const Vec3& q, const Vec3& n, double cos_inc, std::uint64_t key, double& t,
                     double& remission) {
  if (std::fabs(n.z) > 0.5) return true;  // roof
  double lx, ly, nx, ny;
  detail::to_local(p, q.x - p.cx, q.y - p.cy, lx, ly);
  detail::to_local(p, n.x, n.y, nx, ny);
  const double u = std::fabs(nx) > 0.5 ? ly + p.hy : lx + p.hx;
  const double v = q.z - (p.z0 + 0.5);  // height above the ground (buildings sink 0.5 m into it)
  const double floor_h = p.style[0], pitch = p.style[1], width = p.style[2];
  const double fv = positive_fmod(v, floor_h), fu = positive_fmod(u, pitch);
  const bool window = v > 0.5 && v < p.z1 - p.z0 - 1.2 && fv > 0.9 && fv < 0.9 + 0.5 * floor_h &&
                      std::fabs(fu - 0.5 * pitch) < 0.5 * width;
  if (!window) return true;
  if (key_uniform(key, k_slot_material) < p.style[3]) return false;
  t += 0.2 / std::max(cos_inc, 0.3);
  remission *= 0.5;
  return true;
}

struct Return {
  float x, y, z, remission;
  std::uint32_t label;
  bool valid;
};

// The point a traced hit yields, or false if the return is lost (glass,
// out of range after noise).
bool make_return(const Scene& scene, const TraceHit& hit, const Vec3& o, const Vec3& d, std::uint64_t key,
                 const LidarSceneOptions& options, Return& out) {
  double t = hit.t;
  const Vec3 q{o.x + t * d.x, o.y + t * d.y, o.z + t * d.z};
  const Vec3& n = hit.normal;
  const double cos_inc = std::min(1.0, std::fabs(n.x * d.x + n.y * d.y + n.z * d.z));
  SceneClass label;
  double remission, sd;
  if (hit.prim < 0) {
    label = scene.ground_label(q.x, q.y);
    if (label == SceneClass::road) {  // dark asphalt, bright paint
      const bool paint = scene.on_lane_marking(q.x, q.y);
      remission = paint ? 0.75 : 0.24;
      sd = paint ? 0.1 : 0.07;
    } else {
      remission = 0.4;
      sd = 0.09;
    }
  } else {
    const Primitive& p = scene.prims[static_cast<std::size_t>(hit.prim)];
    label = p.label;
    remission = p.remission;
    sd = p.remission_sd;
    double lx, ly, nx, ny;
    switch (p.material) {
      case Material::facade:
        if (!facade_response(p, q, n, cos_inc, key, t, remission)) return false;
        break;
      case Material::car_body:  // licence plates: retroreflective, centred low on the front and back
        detail::to_local(p, q.x - p.cx, q.y - p.cy, lx, ly);
        detail::to_local(p, n.x, n.y, nx, ny);
        if (std::fabs(nx) > 0.7 && std::fabs(ly) < 0.26 && q.z - p.z0 > 0.1 && q.z - p.z0 < 0.25) {
          remission = 0.9;
          sd = 0.05;
        }
        break;
      case Material::car_glass:  // side windows lose returns; the roof is paint
        if (std::fabs(n.z) < 0.5) {
          if (key_uniform(key, k_slot_material) < 0.4) return false;
          remission = std::min(remission, 0.05);
        }
        break;
      case Material::sign:  // only the front face (local -x) is retroreflective
        detail::to_local(p, n.x, n.y, nx, ny);
        if (nx > -0.5) remission = 0.2;
        break;
      case Material::plain:
      case Material::porous:
        break;
    }
  }
  const double range = t + options.range_noise * key_normal(key, k_slot_range);
  if (range < options.min_range || range > options.max_range) return false;
  const double value = remission * (0.7 + 0.3 * cos_inc) + sd * key_normal(key, k_slot_remission);
  out.x = static_cast<float>(o.x + range * d.x);
  out.y = static_cast<float>(o.y + range * d.y);
  out.z = static_cast<float>(o.z + range * d.z);
  out.remission = static_cast<float>(std::clamp(value, 0.0, 1.0));
  out.label = static_cast<std::uint32_t>(label);
  return true;
}

}  // namespace

io::PointCloud simulate_lidar_scan(const LidarSceneOptions& options) {
  validate(options);
  const int beam_count = options.beams, steps = options.azimuth_steps;
  const double azimuth_step = 2 * k_pi / steps;
  const double x_last = static_cast<double>(options.sweeps - 1) * options.sweep_spacing;
  // The scene reaches max_range past every sensor position, so the street seen
  // from a position does not depend on how many sweeps were asked for.
  const Scene scene =
      detail::build_street_scene(options.seed, -options.sensor_height, 0.0, x_last, options.max_range + 10.0);
  const std::vector<Beam> beams = make_beams(beam_count, azimuth_step);
  // Surfaces slightly past max_range can come back inside it with noise.
  const double t_limit = options.max_range + 5.0 * options.range_noise + 0.01;

  std::vector<float> positions, remissions;
  std::vector<std::uint32_t> labels;
  std::vector<Return> buffer(static_cast<std::size_t>(steps) * static_cast<std::size_t>(beam_count));
  for (int sweep = 0; sweep < options.sweeps; ++sweep) {
    const Vec3 origin{static_cast<double>(sweep) * options.sweep_spacing, 0.0, 0.0};
    // Each ray is a pure function of (seed, sweep, beam, azimuth index): any
    // thread count and schedule give the same bits.
#pragma omp parallel
    {
      std::vector<std::uint32_t> mailbox(scene.prims.size(), 0);
      std::uint32_t stamp = 0;
#pragma omp for schedule(dynamic, 8)
      for (int a = 0; a < steps; ++a) {
        for (int b = 0; b < beam_count; ++b) {
          Return& r = buffer[static_cast<std::size_t>(a) * beam_count + b];
          r.valid = false;
          const std::uint64_t key = detail::hash_key({options.seed, static_cast<std::uint64_t>(sweep),
                                                      static_cast<std::uint64_t>(b), static_cast<std::uint64_t>(a)});
          if (key_uniform(key, k_slot_dropout) < options.dropout) continue;
          // Spinning clockwise seen from above, starting behind the sensor.
          const double azimuth = k_pi - (a + 0.5) * azimuth_step + beams[b].azimuth_offset;
          const Vec3 d{beams[b].cos_elevation * std::cos(azimuth), beams[b].cos_elevation * std::sin(azimuth),
                       beams[b].sin_elevation};
          TraceHit hit;
          if (++stamp == 0) {  // wrapped: forget every stamp
            std::fill(mailbox.begin(), mailbox.end(), 0);
            stamp = 1;
          }
          if (trace(scene, origin, d, t_limit, key, mailbox, stamp, hit)) {
            r.valid = make_return(scene, hit, origin, d, key, options, r);
          }
        }
      }
    }
    for (const Return& r : buffer) {
      if (!r.valid) continue;
      positions.insert(positions.end(), {r.x, r.y, r.z});
      remissions.push_back(r.remission);
      labels.push_back(r.label);
    }
  }

  const auto n = static_cast<std::int64_t>(labels.size());
  io::PointCloud cloud;
  cloud.positions = Array::from_vector(positions, Shape{n, 3}, Device::cpu());
  cloud.fields.emplace_back("remission", Array::from_vector(remissions, Shape{n}, Device::cpu()));
  cloud.labels = Array::from_vector(labels, Shape{n}, Device::cpu());
  return cloud;
}

}  // namespace lattice::sim
