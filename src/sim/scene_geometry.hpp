// Geometry of the simulated street: counter-based random numbers, the
// primitives the scene is built from, and their ray intersections.
// Internal to src/sim.
//
// Every random number of the simulation is a pure function of a 64-bit key
// (splitmix64 mixing), never drawn from a shared sequential generator, and no
// std::*_distribution is used: the scan is bit-identical for any thread count
// and standard library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>

#include "lattice/sim/lidar_scene.hpp"

namespace lattice::sim::detail {

inline constexpr double k_pi = 3.14159265358979323846;
inline constexpr double k_inf = std::numeric_limits<double>::infinity();

// ---- random numbers --------------------------------------------------------

// splitmix64's finaliser: a bijection on 64-bit words with good avalanche.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A key for a tuple of integers (seed, sweep, beam, azimuth, ...).
constexpr std::uint64_t hash_key(std::initializer_list<std::uint64_t> values) {
  std::uint64_t h = 0x243F6A8885A308D3ull;
  for (std::uint64_t v : values) h = mix64(h ^ (v + 0x9E3779B97F4A7C15ull));
  return h;
}

// [0, 1) from the top 53 bits.
constexpr double unit_double(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Independent draws from one key: slot i gives its own uniform / normal.
inline double key_uniform(std::uint64_t key, std::uint64_t slot) {
  return unit_double(mix64(key ^ (slot * 0xD1B54A32D192ED03ull + 0x9E3779B97F4A7C15ull)));
}
// Box-Muller on two slots (slot, slot + 1).
inline double key_normal(std::uint64_t key, std::uint64_t slot) {
  const double u1 = key_uniform(key, slot);
  const double u2 = key_uniform(key, slot + 1);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * k_pi * u2);
}

// A sequential splitmix64 stream for single-threaded scene generation. Each
// part of the street (a block side, an intersection) owns one, keyed by its
// identity, so a part's content does not depend on how much street is built.
class Rng {
 public:
  explicit Rng(std::uint64_t key) : state_(key) {}
  std::uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return mix64(state_);
  }
  double uniform() { return unit_double(next()); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Inclusive [lo, hi].
  int integer(int lo, int hi) { return lo + static_cast<int>(uniform() * (hi - lo + 1)); }
  bool chance(double p) { return uniform() < p; }
  double degrees(double lo, double hi) { return uniform(lo, hi) * k_pi / 180.0; }

 private:
  std::uint64_t state_;
};

// ---- primitives --------------------------------------------------------------

struct Vec3 {
  double x = 0, y = 0, z = 0;
};

inline Vec3 normalized(Vec3 v) {
  const double n = std::sqrt(v.x * v.x + v.y * v.y + v.z * v.z);
  return {v.x / n, v.y / n, v.z / n};
}

enum class ShapeKind : std::uint8_t {
  box,        // yawed box: half extents (hx, hy) about (cx, cy), z in [z0, z1]
  cylinder,   // vertical cylinder: radius hx about (cx, cy), z in [z0, z1], with caps
  ellipsoid,  // axis-aligned ellipsoid: radii (hx, hy, (z1 - z0) / 2) about its centre
  terrain,    // solid ground patch x in cx +- hx, y in cy +- hy, top z0 + TerrainField(x, y)
};

// How a surface answers the laser beyond its base remission.
enum class Material : std::uint8_t {
  plain,
  porous,     // foliage, chain-link: rays pass with `porosity`, else return from some depth inside
  facade,     // building walls with a window grid: glass loses returns, frames are recessed
  car_body,   // paint, with a bright licence plate on the front and back faces
  car_glass,  // cabin: side windows lose some returns, the roof is paint
  sign,       // retroreflective front face (local -x), dull back
};

// One solid of the scene. Geometry in the sensor frame of the first sweep.
struct Primitive {
  ShapeKind shape = ShapeKind::box;
  Material material = Material::plain;
  SceneClass label = SceneClass::unlabeled;
  float remission = 0.2f;      // mean remission at normal incidence
  float remission_sd = 0.05f;  // per-point spread
  float porosity = 0.0f;       // porous: probability a ray passes through
  float depth = 0.0f;          // porous: mean penetration (m) of a return
  float style[4] = {};         // material parameters (window grid, sign facing)
  double cx = 0, cy = 0, hx = 0, hy = 0, z0 = 0, z1 = 0;
  double cos_yaw = 1, sin_yaw = 0;
  // Stable identity (independent of the primitive's index), keys per-ray
  // random decisions and breaks exact ties.
  std::uint64_t uid = 0;
};

// Gentle undulation of grass: a few low-frequency waves, |g| <= amplitude().
struct TerrainField {
  double a[3] = {}, kx[3] = {}, ky[3] = {}, phase[3] = {};
  double amplitude() const { return std::fabs(a[0]) + std::fabs(a[1]) + std::fabs(a[2]); }
  double height(double x, double y) const {
    double h = 0;
    for (int i = 0; i < 3; ++i) h += a[i] * std::sin(kx[i] * x + ky[i] * y + phase[i]);
    return h;
  }
  void gradient(double x, double y, double& gx, double& gy) const {
    gx = gy = 0;
    for (int i = 0; i < 3; ++i) {
      const double c = a[i] * std::cos(kx[i] * x + ky[i] * y + phase[i]);
      gx += c * kx[i];
      gy += c * ky[i];
    }
  }
};

// Entry and exit distances along the ray and the outward normal at entry.
struct Hit {
  double t = k_inf;
  double t_out = k_inf;
  Vec3 normal;
};

inline constexpr double k_min_t = 1e-6;

// Transforms a point/direction into the primitive's yawed local frame (x, y only).
inline void to_local(const Primitive& p, double wx, double wy, double& lx, double& ly) {
  lx = p.cos_yaw * wx + p.sin_yaw * wy;
  ly = -p.sin_yaw * wx + p.cos_yaw * wy;
}

inline bool intersect_box(const Primitive& p, const Vec3& o, const Vec3& d, Hit& hit) {
  double lo[3], ld[3];
  to_local(p, o.x - p.cx, o.y - p.cy, lo[0], lo[1]);
  to_local(p, d.x, d.y, ld[0], ld[1]);
  lo[2] = o.z - 0.5 * (p.z0 + p.z1);
  ld[2] = d.z;
  const double half[3] = {p.hx, p.hy, 0.5 * (p.z1 - p.z0)};
  double t_in = -k_inf, t_out = k_inf, sign = 0;
  int axis = -1;
  for (int a = 0; a < 3; ++a) {
    if (std::fabs(ld[a]) < 1e-12) {
      if (std::fabs(lo[a]) > half[a]) return false;
      continue;
    }
    const double inv = 1.0 / ld[a];
    double t0 = (-half[a] - lo[a]) * inv, t1 = (half[a] - lo[a]) * inv;
    double s = -1;  // the ray enters through the -half face when moving in +a
    if (t0 > t1) {
      std::swap(t0, t1);
      s = 1;
    }
    if (t0 > t_in) {
      t_in = t0;
      axis = a;
      sign = s;
    }
    t_out = std::min(t_out, t1);
  }
  if (axis < 0 || t_in > t_out || t_in < k_min_t) return false;
  hit.t = t_in;
  hit.t_out = t_out;
  if (axis == 2) {
    hit.normal = {0, 0, sign};
  } else {
    const double nx = axis == 0 ? sign : 0, ny = axis == 1 ? sign : 0;
    hit.normal = {p.cos_yaw * nx - p.sin_yaw * ny, p.sin_yaw * nx + p.cos_yaw * ny, 0};
  }
  return true;
}

inline bool intersect_cylinder(const Primitive& p, const Vec3& o, const Vec3& d, Hit& hit) {
  const double px = o.x - p.cx, py = o.y - p.cy;
  const double a = d.x * d.x + d.y * d.y;
  if (a < 1e-14) return false;  // vertical ray: never emitted by the sensor
  const double b = px * d.x + py * d.y;
  const double c = px * px + py * py - p.hx * p.hx;
  const double disc = b * b - a * c;
  if (disc < 0) return false;
  const double root = std::sqrt(disc);
  double t_in = (-b - root) / a, t_out = (-b + root) / a;
  bool side = true;
  if (std::fabs(d.z) > 1e-12) {  // clip to the z slab; entering through a cap
    double tz0 = (p.z0 - o.z) / d.z, tz1 = (p.z1 - o.z) / d.z;
    if (tz0 > tz1) std::swap(tz0, tz1);
    if (tz0 > t_in) {
      t_in = tz0;
      side = false;
    }
    t_out = std::min(t_out, tz1);
  } else if (o.z < p.z0 || o.z > p.z1) {
    return false;
  }
  if (t_in > t_out || t_in < k_min_t) return false;
  hit.t = t_in;
  hit.t_out = t_out;
  if (side) {
    hit.normal = {(px + t_in * d.x) / p.hx, (py + t_in * d.y) / p.hx, 0};
  } else {
    hit.normal = {0, 0, d.z < 0 ? 1.0 : -1.0};
  }
  return true;
}

inline bool intersect_ellipsoid(const Primitive& p, const Vec3& o, const Vec3& d, Hit& hit) {
  const double rz = 0.5 * (p.z1 - p.z0);
  const Vec3 q{(o.x - p.cx) / p.hx, (o.y - p.cy) / p.hy, (o.z - (p.z0 + rz)) / rz};
  const Vec3 e{d.x / p.hx, d.y / p.hy, d.z / rz};
  const double a = e.x * e.x + e.y * e.y + e.z * e.z;
  const double b = q.x * e.x + q.y * e.y + q.z * e.z;
  const double c = q.x * q.x + q.y * q.y + q.z * q.z - 1.0;
  const double disc = b * b - a * c;
  if (disc < 0) return false;
  const double root = std::sqrt(disc);
  const double t_in = (-b - root) / a;
  if (t_in < k_min_t) return false;
  hit.t = t_in;
  hit.t_out = (-b + root) / a;
  const Vec3 s{q.x + t_in * e.x, q.y + t_in * e.y, q.z + t_in * e.z};
  hit.normal = normalized({s.x / p.hx, s.y / p.hy, s.z / rz});
  return true;
}

// A solid whose top is z0 + field(x, y): the ray either enters through a
// vertical side (below the top there) or crosses the top, found by bracketing
// regula falsi (the field is smooth and gentle, so a few steps reach mm).
inline bool intersect_terrain(const Primitive& p, const TerrainField& field, const Vec3& o, const Vec3& d, Hit& hit) {
  double t0 = k_min_t, t1 = k_inf;
  int side_axis = -1;
  double side_sign = 0;
  const double lo[2] = {o.x - p.cx, o.y - p.cy}, dir[2] = {d.x, d.y}, half[2] = {p.hx, p.hy};
  for (int a = 0; a < 2; ++a) {
    if (std::fabs(dir[a]) < 1e-12) {
      if (std::fabs(lo[a]) > half[a]) return false;
      continue;
    }
    double ta = (-half[a] - lo[a]) / dir[a], tb = (half[a] - lo[a]) / dir[a];
    double s = -1;
    if (ta > tb) {
      std::swap(ta, tb);
      s = 1;
    }
    if (ta > t0) {
      t0 = ta;
      side_axis = a;
      side_sign = s;
    }
    t1 = std::min(t1, tb);
  }
  if (t0 > t1) return false;
  const double top = p.z0 + field.amplitude();
  if (d.z >= 0 && o.z + t0 * d.z > top) return false;
  if (d.z < 0) {  // skip the part of the ray that is above every possible top
    const double t_top = (top - o.z) / d.z;
    if (t_top > t1) return false;
    if (t_top > t0) {
      t0 = t_top;
      side_axis = -1;
    }
  }
  auto f = [&](double t) { return o.z + t * d.z - p.z0 - field.height(o.x + t * d.x, o.y + t * d.y); };
  double f0 = f(t0);
  if (f0 <= 0) {                      // already below the top at entry
    if (side_axis < 0) return false;  // ray started inside: sensor never does
    hit.t = t0;
    hit.t_out = t1;
    hit.normal = {side_axis == 0 ? side_sign : 0, side_axis == 1 ? side_sign : 0, 0};
    return true;
  }
  double f1 = f(t1);
  if (f1 > 0) return false;
  double t = t0;
  int stale = 0;  // Illinois modification: halve the stuck end's value
  for (int i = 0; i < 12 && t1 - t0 > 1e-4; ++i) {
    t = (t0 * f1 - t1 * f0) / (f1 - f0);
    const double ft = f(t);
    if (ft > 0) {
      t0 = t;
      f0 = ft;
      if (stale == 1) f1 *= 0.5;
      stale = 1;
    } else {
      t1 = t;
      f1 = ft;
      if (stale == -1) f0 *= 0.5;
      stale = -1;
    }
  }
  double gx, gy;
  field.gradient(o.x + t * d.x, o.y + t * d.y, gx, gy);
  hit.t = t;
  hit.t_out = t + 1.0;
  hit.normal = normalized({-gx, -gy, 1.0});
  return true;
}

inline bool intersect(const Primitive& p, const TerrainField& field, const Vec3& o, const Vec3& d, Hit& hit) {
  switch (p.shape) {
    case ShapeKind::box:
      return intersect_box(p, o, d, hit);
    case ShapeKind::cylinder:
      return intersect_cylinder(p, o, d, hit);
    case ShapeKind::ellipsoid:
      return intersect_ellipsoid(p, o, d, hit);
    case ShapeKind::terrain:
      return intersect_terrain(p, field, o, d, hit);
  }
  return false;
}

}  // namespace lattice::sim::detail
