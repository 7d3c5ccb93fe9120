#include "sim/street_scene.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <vector>

namespace lattice::sim::detail {
namespace {

constexpr double k_lot_depth = 70.0;  // ground and lots are modelled this far beyond the curbs
constexpr double k_grid_cell = 2.0;   // metres; a few primitives per cell in dense parts

// Salt of every street key, chosen among a few so that the default seed (0)
// gives a typical street for the demo: parked cars, trees, hedges, a cross
// street, pedestrians and signs in view.
constexpr std::uint64_t k_street_salt = 27;

// Independent generator streams, one per kind of street part.
enum : std::uint64_t {
  k_stream_layout = 1,
  k_stream_crossings = 2,
  k_stream_block = 3,
  k_stream_road = 4,
  k_stream_junction = 5,
};

struct Rect {
  double x0, x1, y0, y1;
};

// Footprints claimed within one street part, to keep its objects apart.
class Footprints {
 public:
  bool free(const Rect& r) const {
    return std::none_of(rects_.begin(), rects_.end(),
                        [&](const Rect& o) { return r.x0 < o.x1 && o.x0 < r.x1 && r.y0 < o.y1 && o.y0 < r.y1; });
  }
  // Claims `r` if it is free.
  bool claim(const Rect& r) {
    if (!free(r)) return false;
    rects_.push_back(r);
    return true;
  }
  void mark(const Rect& r) { rects_.push_back(r); }

 private:
  std::vector<Rect> rects_;
};

Rect around(double x, double y, double half_x, double half_y) {
  return {x - half_x, x + half_x, y - half_y, y + half_y};
}

class StreetBuilder {
 public:
  explicit StreetBuilder(Scene& scene) : scene_(scene), layout_(scene.layout) {}

  // Starts a street part: its primitives' uids and its random stream derive from `key`.
  Rng begin_part(std::initializer_list<std::uint64_t> key_values) {
    part_key_ = hash_key(key_values);
    ordinal_ = 0;
    return Rng(part_key_);
  }

  void block_side(int side, double bx0, double bx1, Rng& rng);
  void road_block(double bx0, double bx1, Rng& rng);
  void junction(const Crossing& crossing, Rng& rng);

 private:
  // Outward distance from side `side`'s curb line to y (negative: on the road) and back.
  double y_at(int side, double w) const { return layout_.edge_y[side] + (side == 0 ? -w : w); }
  double sidewalk_top(int side) const { return layout_.road_z + layout_.curb[side]; }
  Rect rect_w(int side, double x0, double x1, double w0, double w1) const {
    const double ya = y_at(side, w0), yb = y_at(side, w1);
    return {x0, x1, std::min(ya, yb), std::max(ya, yb)};
  }

  Primitive& add(ShapeKind shape, SceneClass label, float remission, float sd) {
    Primitive p;
    p.shape = shape;
    p.label = label;
    p.remission = remission;
    p.remission_sd = sd;
    p.uid = hash_key({part_key_, ordinal_++});
    scene_.prims.push_back(p);
    return scene_.prims.back();
  }
  Primitive& box(SceneClass label, double cx, double cy, double hx, double hy, double yaw, double z0, double z1,
                 float remission, float sd = 0.05f) {
    Primitive& p = add(ShapeKind::box, label, remission, sd);
    p.cx = cx, p.cy = cy, p.hx = hx, p.hy = hy, p.z0 = z0, p.z1 = z1;
    p.cos_yaw = std::cos(yaw), p.sin_yaw = std::sin(yaw);
    return p;
  }
  // Axis-aligned box given in street coordinates: x in [x0, x1], w in [w0, w1] on `side`.
  Primitive& box_w(int side, SceneClass label, double x0, double x1, double w0, double w1, double z0, double z1,
                   float remission, float sd = 0.05f) {
    const double ya = y_at(side, w0), yb = y_at(side, w1);
    return box(label, 0.5 * (x0 + x1), 0.5 * (ya + yb), 0.5 * (x1 - x0), 0.5 * std::fabs(yb - ya), 0.0, z0, z1,
               remission, sd);
  }
  void terrain_w(int side, double x0, double x1, double w0, double w1, double base, Rng& rng) {
    const double ya = y_at(side, w0), yb = y_at(side, w1);
    Primitive& p = add(ShapeKind::terrain, SceneClass::terrain, static_cast<float>(rng.uniform(0.36, 0.48)), 0.09f);
    p.cx = 0.5 * (x0 + x1), p.cy = 0.5 * (ya + yb), p.hx = 0.5 * (x1 - x0), p.hy = 0.5 * std::fabs(yb - ya);
    p.z0 = p.z1 = base;
  }
  Primitive& cylinder(SceneClass label, double cx, double cy, double r, double z0, double z1, float remission,
                      float sd = 0.05f) {
    Primitive& p = add(ShapeKind::cylinder, label, remission, sd);
    p.cx = cx, p.cy = cy, p.hx = p.hy = r, p.z0 = z0, p.z1 = z1;
    return p;
  }
  Primitive& ellipsoid(SceneClass label, double cx, double cy, double rx, double ry, double z0, double z1,
                       float remission, float sd) {
    Primitive& p = add(ShapeKind::ellipsoid, label, remission, sd);
    p.cx = cx, p.cy = cy, p.hx = rx, p.hy = ry, p.z0 = z0, p.z1 = z1;
    return p;
  }
  static void make_porous(Primitive& p, double porosity, double depth) {
    p.material = Material::porous;
    p.porosity = static_cast<float>(porosity);
    p.depth = static_cast<float>(depth);
  }

  // Composite objects. Each returns false (adding nothing) when its footprint is taken.
  bool tree(double x, double y, double ground, Rng& rng, Footprints& used, bool street_tree);
  bool bush(double x, double y, double ground, Rng& rng, Footprints& used);
  bool car(double x, double y, double yaw, double ground, Rng& rng, Footprints& used);
  bool person(double x, double y, double ground, Rng& rng, Footprints& used);
  bool street_light(int side, double x, double ground, Rng& rng, Footprints& used);
  bool sign(double x, double y, double ground, double yaw, Rng& rng, Footprints& used);
  void building(int side, double x0, double x1, double w0, double depth, double height, double yaw, Rng& rng);
  void lot(int side, double x0, double x1, double front, bool urban, Rng& rng);
  void hedge_or_fence(int side, double x0, double x1, double w, Rng& rng, Footprints& used);

  Scene& scene_;
  const StreetLayout& layout_;
  std::uint64_t part_key_ = 0;
  std::uint64_t ordinal_ = 0;
};

bool StreetBuilder::tree(double x, double y, double ground, Rng& rng, Footprints& used, bool street_tree) {
  const double trunk_r = rng.uniform(0.08, 0.2);
  if (!used.claim(around(x, y, trunk_r + 0.6, trunk_r + 0.6))) return false;
  // Street trees keep their crowns above traffic (and above the sensor).
  const double clear = street_tree ? rng.uniform(2.4, 3.6) : rng.uniform(1.2, 3.0);
  const double rxy = street_tree ? rng.uniform(1.8, 3.5) : rng.uniform(1.5, 4.0);
  const double rz = rxy * rng.uniform(0.8, 1.4);
  const double crown_z0 = ground + clear;
  cylinder(SceneClass::trunk, x, y, trunk_r, ground - 0.2, crown_z0 + 0.7 * rz,
           static_cast<float>(rng.uniform(0.25, 0.4)), 0.1f);
  const double ox = rng.uniform(-0.3, 0.3), oy = rng.uniform(-0.3, 0.3);
  Primitive& crown = ellipsoid(SceneClass::vegetation, x + ox, y + oy, rxy * rng.uniform(0.85, 1.15), rxy, crown_z0,
                               crown_z0 + 2 * rz, static_cast<float>(rng.uniform(0.3, 0.48)), 0.14f);
  make_porous(crown, rng.uniform(0.05, 0.2), rng.uniform(0.2, 0.5));
  return true;
}

bool StreetBuilder::bush(double x, double y, double ground, Rng& rng, Footprints& used) {
  const double r = rng.uniform(0.4, 1.3);
  if (!used.claim(around(x, y, r, r))) return false;
  Primitive& p = ellipsoid(SceneClass::vegetation, x, y, r * rng.uniform(0.8, 1.3), r, ground - 0.2,
                           ground + r * rng.uniform(1.2, 2.0), static_cast<float>(rng.uniform(0.3, 0.48)), 0.14f);
  make_porous(p, 0.05, 0.15);
  return true;
}

// A lower body on four wheels plus a cabin, about 4-5 m x 1.7-1.9 m x 1.4-1.6 m.
bool StreetBuilder::car(double x, double y, double yaw, double ground, Rng& rng, Footprints& used) {
  const double length = rng.uniform(4.0, 5.0), width = rng.uniform(1.7, 1.9), height = rng.uniform(1.4, 1.6);
  const double c = std::fabs(std::cos(yaw)), s = std::fabs(std::sin(yaw));
  const double ex = 0.5 * (length * c + width * s) + 0.3, ey = 0.5 * (length * s + width * c) + 0.3;
  if (!used.claim(around(x, y, ex, ey))) return false;
  // Most cars are dark; KITTI's mean car remission is about 0.05.
  const float paint = static_cast<float>(rng.chance(0.6) ? rng.uniform(0.02, 0.1) : rng.uniform(0.1, 0.45));
  const double belt = ground + rng.uniform(0.9, 1.0);
  Primitive& body = box(SceneClass::car, x, y, 0.5 * length, 0.5 * width, yaw, ground + 0.3, belt, paint, 0.04f);
  body.material = Material::car_body;
  for (int i = 0; i < 4; ++i) {
    const double lx = (i & 1 ? 1 : -1) * (0.5 * length - 0.8), ly = (i & 2 ? 1 : -1) * (0.5 * width - 0.14);
    box(SceneClass::car, x + lx * std::cos(yaw) - ly * std::sin(yaw), y + lx * std::sin(yaw) + ly * std::cos(yaw), 0.32,
        0.12, yaw, ground, ground + 0.64, 0.04f, 0.02f);
  }
  const double shift = -0.05 * length;  // cabins sit a little behind the centre
  Primitive& cabin =
      box(SceneClass::car, x + shift * std::cos(yaw), y + shift * std::sin(yaw), length * rng.uniform(0.27, 0.33),
          0.5 * width - 0.08, yaw, belt, ground + height, paint, 0.04f);
  cabin.material = Material::car_glass;
  return true;
}

bool StreetBuilder::person(double x, double y, double ground, Rng& rng, Footprints& used) {
  const double r = rng.uniform(0.22, 0.28);
  if (!used.claim(around(x, y, r + 0.15, r + 0.15))) return false;
  cylinder(SceneClass::person, x, y, r, ground, ground + rng.uniform(1.6, 1.9),
           static_cast<float>(rng.uniform(0.2, 0.45)), 0.08f);
  return true;
}

// A lamp post near the curb with an arm reaching over the road.
bool StreetBuilder::street_light(int side, double x, double ground, Rng& rng, Footprints& used) {
  const double w = rng.uniform(0.4, 0.7), y = y_at(side, w);
  if (!used.claim(around(x, y, 0.8, 0.8))) return false;
  const double height = rng.uniform(6.0, 9.0), r = rng.uniform(0.07, 0.12), arm = rng.uniform(1.0, 2.5);
  const float rem = static_cast<float>(rng.uniform(0.15, 0.35));
  cylinder(SceneClass::pole, x, y, r, ground - 0.2, ground + height, rem);
  const double arm_y = y_at(side, w - 0.5 * arm);
  box(SceneClass::pole, x, arm_y, 0.06, 0.5 * arm, 0.0, ground + height - 0.12, ground + height, rem);
  box(SceneClass::pole, x, y_at(side, w - arm), 0.25, 0.35, 0.0, ground + height - 0.3, ground + height - 0.05, rem);
  return true;
}

// A signpost with a plate whose front (local -x) faces direction yaw + pi.
bool StreetBuilder::sign(double x, double y, double ground, double yaw, Rng& rng, Footprints& used) {
  if (!used.claim(around(x, y, 0.5, 0.5))) return false;
  const double top = ground + rng.uniform(2.3, 3.2), half = rng.uniform(0.28, 0.42);
  cylinder(SceneClass::pole, x, y, rng.uniform(0.035, 0.05), ground - 0.2, top - 0.1,
           static_cast<float>(rng.uniform(0.15, 0.3)));
  Primitive& plate = box(SceneClass::traffic_sign, x - 0.05 * std::cos(yaw), y - 0.05 * std::sin(yaw), 0.015, half, yaw,
                         top - 2 * half, top, static_cast<float>(rng.uniform(0.45, 0.95)), 0.08f);
  plate.material = Material::sign;
  return true;
}

// A building block with a window grid; w0 is its facade's distance from the curb line.
void StreetBuilder::building(int side, double x0, double x1, double w0, double depth, double height, double yaw,
                             Rng& rng) {
  const double ground = sidewalk_top(side);
  const double ya = y_at(side, w0), yb = y_at(side, w0 + depth);
  Primitive& p = box(SceneClass::building, 0.5 * (x0 + x1), 0.5 * (ya + yb), 0.5 * (x1 - x0), 0.5 * depth, yaw,
                     ground - 0.5, ground + height, static_cast<float>(rng.uniform(0.12, 0.35)), 0.1f);
  p.material = Material::facade;
  p.style[0] = static_cast<float>(rng.uniform(2.8, 3.6));               // floor height
  p.style[1] = static_cast<float>(rng.uniform(2.4, 4.0));               // window pitch
  p.style[2] = static_cast<float>(p.style[1] * rng.uniform(0.3, 0.6));  // window width
  p.style[3] = static_cast<float>(rng.uniform(0.3, 0.8));               // share of window returns lost to glass
}

void StreetBuilder::hedge_or_fence(int side, double x0, double x1, double w, Rng& rng, Footprints& used) {
  const double ground = sidewalk_top(side);
  const bool is_hedge = rng.chance(0.65);
  // Leave an entrance.
  const double gap0 = rng.uniform(x0 + 0.5, std::max(x0 + 0.5, x1 - 4.0)), gap1 = gap0 + rng.uniform(1.2, 3.5);
  const double pieces[2][2] = {{x0 + 0.3, gap0}, {gap1, x1 - 0.3}};
  const double height = is_hedge ? rng.uniform(0.7, 1.7) : rng.uniform(0.9, 1.9);
  const double thick = is_hedge ? rng.uniform(0.5, 1.0) : rng.uniform(0.04, 0.08);
  const double porosity = is_hedge ? 0.04 : (rng.chance(0.5) ? 0.0 : rng.uniform(0.3, 0.6));
  const float rem = static_cast<float>(rng.uniform(0.18, 0.4));
  for (const auto& piece : pieces) {
    if (piece[1] - piece[0] < 0.5) continue;
    Primitive& p = box_w(side, is_hedge ? SceneClass::vegetation : SceneClass::fence, piece[0], piece[1], w, w + thick,
                         ground - 0.1, ground + height, rem, is_hedge ? 0.14f : 0.08f);
    if (porosity > 0) make_porous(p, porosity, is_hedge ? 0.15 : 0.02);
    used.mark(rect_w(side, piece[0], piece[1], w, w + thick));
  }
}

// One lot between sidewalk and back: ground, perhaps a building, yard, backyard.
void StreetBuilder::lot(int side, double x0, double x1, double front, bool urban, Rng& rng) {
  Footprints used;
  const double ground = sidewalk_top(side);
  enum class Use { building, parking, green };
  const double use_draw = rng.uniform();
  const Use use = use_draw < (urban ? 0.85 : 0.8) ? Use::building
                  : (urban || use_draw < 0.88)    ? Use::parking
                                                  : Use::green;
  if (use == Use::parking || (use == Use::building && rng.chance(urban ? 0.8 : 0.25))) {  // paved
    box_w(side, SceneClass::sidewalk, x0, x1, front, k_lot_depth, layout_.road_z - 0.3, ground,
          static_cast<float>(rng.uniform(0.28, 0.42)), 0.07f);
  } else {
    terrain_w(side, x0, x1, front, k_lot_depth, ground - 0.04, rng);
  }
  double back = front + 3.0;  // what stands behind this distance from the curb is backyard
  if (use == Use::building) {
    const double setback = urban ? (rng.chance(0.5) ? 0.0 : rng.uniform(0.5, 4.0)) : rng.uniform(3.0, 10.0);
    const double gap = urban ? (rng.chance(0.6) ? 0.0 : rng.uniform(1.0, 6.0)) : rng.uniform(2.0, 8.0);
    const double split = rng.uniform(0.2, 0.8);
    const double frontage = std::min(x1 - x0, std::max(4.0, x1 - x0 - gap));
    const double fx0 = x0 + (x1 - x0 - frontage) * split, fx1 = fx0 + frontage;
    const double depth = rng.uniform(8.0, 20.0);
    const double height = urban ? rng.uniform(10.0, 25.0) : rng.uniform(4.0, 10.0);
    const double yaw = setback >= 3.0 ? rng.degrees(-2.0, 2.0) : 0.0;
    building(side, fx0, fx1, front + setback, depth, height, yaw, rng);
    used.mark(rect_w(side, fx0 - 0.5, fx1 + 0.5, front + setback - 0.8, front + setback + depth + 0.8));
    if (!urban && gap > 4.5 && rng.chance(0.4)) {  // a garage in the side gap
      const double gx0 = fx1 + 0.5, gx1 = std::min(x1 - 0.3, gx0 + 3.2);
      if (gx1 - gx0 > 2.5) {
        box_w(side, SceneClass::building, gx0, gx1, front + setback + 1.0, front + setback + 7.0, ground - 0.2,
              ground + rng.uniform(2.4, 3.0), static_cast<float>(rng.uniform(0.15, 0.35)), 0.08f);
        used.mark(rect_w(side, gx0 - 0.3, gx1 + 0.3, front + setback + 0.5, front + setback + 7.5));
      }
    }
    if (setback >= 3.0) {  // front yard, perhaps with a car in the driveway
      if (rng.chance(0.75)) hedge_or_fence(side, x0, x1, front + 0.2, rng, used);
      if (setback >= 5.5 && rng.chance(0.4)) {  // nose-in where the yard is deep enough, else alongside
        const double car_yaw = (setback >= 8.5 ? 0.5 * k_pi : 0.0) + rng.degrees(-5.0, 5.0);
        car(rng.uniform(x0 + 1.5, x1 - 1.5), y_at(side, front + 0.5 * setback + 0.5), car_yaw, ground, rng, used);
      }
      for (int i = rng.integer(0, 2); i > 0; --i) {
        tree(rng.uniform(x0 + 1.5, x1 - 1.5), y_at(side, front + rng.uniform(1.8, setback - 1.2)), ground - 0.04, rng,
             used, false);
      }
      for (int i = rng.integer(0, 4); i > 0; --i) {
        bush(rng.uniform(x0 + 1.0, x1 - 1.0), y_at(side, front + rng.uniform(1.5, setback - 0.8)), ground - 0.04, rng,
             used);
      }
    }
    for (int i = urban ? 0 : rng.integer(0, 4); i > 0; --i) {  // shrubs along the house front
      bush(rng.uniform(fx0, fx1), y_at(side, front + setback - rng.uniform(0.6, 1.2)), ground - 0.04, rng, used);
    }
    back = front + setback + depth;
    if (!urban && rng.chance(0.4)) {  // a fence between this lot and the previous one
      box_w(side, SceneClass::fence, x0 - 0.03, x0 + 0.03, front + 0.5, back, ground - 0.1,
            ground + rng.uniform(1.0, 1.9), static_cast<float>(rng.uniform(0.15, 0.35)), 0.08f);
    }
  } else if (use == Use::parking) {  // parking lot with cars nose-in
    const double row_w = front + rng.uniform(1.0, 3.0) + 2.4;
    double x = x0 + 1.6;
    while (x + 1.2 < x1) {
      if (rng.chance(0.65)) {
        car(x, y_at(side, row_w), 0.5 * k_pi + rng.degrees(-4.0, 4.0) + (rng.chance(0.5) ? k_pi : 0.0), ground, rng,
            used);
      }
      x += rng.uniform(2.5, 2.9);
    }
    if (rng.chance(0.5)) hedge_or_fence(side, x0, x1, front + 0.2, rng, used);
  } else {  // a green gap: trees and bushes
    for (int i = rng.integer(1, 4); i > 0; --i) {
      tree(rng.uniform(x0 + 1.0, x1 - 1.0), y_at(side, front + rng.uniform(2.0, 25.0)), ground - 0.04, rng, used,
           false);
    }
    for (int i = rng.integer(0, 3); i > 0; --i) {
      bush(rng.uniform(x0 + 1.0, x1 - 1.0), y_at(side, front + rng.uniform(1.0, 15.0)), ground - 0.04, rng, used);
    }
    if (rng.chance(0.4)) hedge_or_fence(side, x0, x1, front + 0.2, rng, used);
  }
  // Backyard trees and a second row of buildings show through the gaps.
  for (int i = rng.chance(urban ? 0.3 : 0.6) ? rng.integer(1, 3) : 0; i > 0; --i) {
    tree(rng.uniform(x0 + 1.0, x1 - 1.0), y_at(side, back + rng.uniform(2.0, 10.0)), ground - 0.04, rng, used, false);
  }
  if (rng.chance(urban ? 0.6 : 0.35)) {
    const double w0 = back + rng.uniform(12.0, 25.0), length = std::min(x1 - x0, rng.uniform(8.0, 30.0));
    const double bx0 = rng.uniform(x0, x1 - length);
    const double depth = std::min(rng.uniform(8.0, 20.0), k_lot_depth - w0);
    const double height = urban ? rng.uniform(8.0, 25.0) : rng.uniform(5.0, 12.0);
    if (depth >= 8.0 && used.free(rect_w(side, bx0, bx0 + length, w0 - 0.5, w0 + depth))) {
      building(side, bx0, bx0 + length, w0, depth, height, 0.0, rng);
    }
  }
}

// One side of the street between two cross streets: sidewalk, corners, lots,
// street furniture along the curb, pedestrians and parked cars.
void StreetBuilder::block_side(int side, double bx0, double bx1, Rng& rng) {
  Footprints used;
  const double ground = sidewalk_top(side), slab_z0 = layout_.road_z - 0.3;
  const bool urban = rng.chance(0.4);
  const double lawn = rng.chance(urban ? 0.2 : 0.6) ? rng.uniform(1.0, 3.0) : 0.0;  // grass strip along the curb
  const double front = layout_.sidewalk_width[side] + lawn;
  const float sidewalk_rem = static_cast<float>(rng.uniform(0.3, 0.44));
  if (lawn > 0) {
    box_w(side, SceneClass::sidewalk, bx0, bx1, 0.0, 0.25, slab_z0, ground, sidewalk_rem, 0.07f);  // curb stones
    terrain_w(side, bx0, bx1, 0.25, 0.25 + lawn, ground - 0.03, rng);
    box_w(side, SceneClass::sidewalk, bx0, bx1, 0.25 + lawn, front, slab_z0, ground, sidewalk_rem, 0.07f);
  } else {
    box_w(side, SceneClass::sidewalk, bx0, bx1, 0.0, front, slab_z0, ground, sidewalk_rem, 0.07f);
  }
  const double corner = rng.uniform(2.0, 3.5);  // sidewalks along the cross streets
  box_w(side, SceneClass::sidewalk, bx0, bx0 + corner, front, k_lot_depth, slab_z0, ground, sidewalk_rem, 0.07f);
  box_w(side, SceneClass::sidewalk, bx1 - corner, bx1, front, k_lot_depth, slab_z0, ground, sidewalk_rem, 0.07f);

  double x = bx0 + corner;
  const double end = bx1 - corner;
  while (end - x > 4.0) {
    double x1 = std::min(x + (urban ? rng.uniform(12.0, 40.0) : rng.uniform(12.0, 25.0)), end);
    if (end - x1 < 8.0) x1 = end;
    lot(side, x, x1, front, urban, rng);
    x = x1;
  }

  // Street trees in a row along the curb (in the grass strip when there is one).
  if (rng.chance(urban ? 0.45 : 0.85)) {
    const double pitch = rng.uniform(6.0, 13.0);
    const double w = lawn > 0 ? 0.25 + 0.5 * lawn : rng.uniform(0.7, 1.1);
    x = bx0 + rng.uniform(3.0, 8.0);
    while (x < bx1 - 3.0) {
      if (rng.chance(0.9)) tree(x, y_at(side, w), ground, rng, used, true);
      x += pitch + rng.uniform(-1.0, 1.0);
    }
  }
  x = bx0 + rng.uniform(4.0, 20.0);
  while (x < bx1 - 3.0) {
    street_light(side, x, ground, rng, used);
    x += rng.uniform(25.0, 40.0);
  }
  // Signs face the traffic on their side: side 0 faces -x, side 1 faces +x.
  for (int i = rng.integer(0, 2); i > 0; --i) {
    sign(rng.uniform(bx0 + 3.0, bx1 - 3.0), y_at(side, rng.uniform(0.4, 0.7)), ground, side == 0 ? 0.0 : k_pi, rng,
         used);
  }
  const double walk0 = (lawn > 0 ? 0.25 + lawn : 0.0) + 0.5;
  for (int i = rng.integer(0, urban ? 4 : 2); i > 0; --i) {
    const double px = rng.uniform(bx0 + 2.0, bx1 - 2.0), w = rng.uniform(walk0, std::max(walk0, front - 0.4));
    if (person(px, y_at(side, w), ground, rng, used) && rng.chance(0.3)) {
      person(px + rng.uniform(0.6, 0.9), y_at(side, w + rng.uniform(-0.3, 0.3)), ground, rng,
             used);  // walking in pairs
    }
  }
  // Cars parked along the curb.
  if (layout_.parking_width[side] > 0) {
    const double w = -0.5 * layout_.parking_width[side], occupancy = rng.uniform(0.1, 0.75);
    x = bx0 + rng.uniform(1.0, 6.0);
    while (x + 5.5 < bx1) {
      if (!rng.chance(occupancy)) {  // an empty space
        x += rng.uniform(5.0, 12.0);
        continue;
      }
      const double length_guess = 4.6;
      const double yaw = rng.degrees(-3.0, 3.0) + (rng.chance(0.15) ? k_pi : 0.0);
      car(x + 0.5 * length_guess, y_at(side, w + rng.uniform(-0.15, 0.15)), yaw, layout_.road_z, rng, used);
      x += length_guess + rng.uniform(0.8, 3.5);
    }
  }
}

// The travel lanes between two cross streets: a few cars (never in the
// sensor's lane, which it drives along) and people crossing.
void StreetBuilder::road_block(double bx0, double bx1, Rng& rng) {
  Footprints used;
  const StreetLayout& l = layout_;
  for (int lane = 0; lane < l.lanes; ++lane) {
    if (lane == l.ego_lane) continue;
    const bool oncoming = lane >= (l.lanes + 1) / 2;
    const double y = l.lanes_y0 + (lane + 0.5) * l.lane_width;
    double x = bx0 + rng.uniform(3.0, 30.0);
    while (x < bx1 - 6.0) {
      if (rng.chance(0.5)) {
        car(x, y + rng.uniform(-0.3, 0.3), rng.degrees(-2.0, 2.0) + (oncoming ? k_pi : 0.0), l.road_z, rng, used);
      }
      x += rng.uniform(10.0, 60.0);
    }
  }
  if (rng.chance(0.25)) {
    int lane = rng.integer(0, l.lanes - 2);
    if (lane >= l.ego_lane) ++lane;
    person(rng.uniform(bx0 + 3.0, bx1 - 3.0), l.lanes_y0 + (lane + rng.uniform(0.2, 0.8)) * l.lane_width, l.road_z, rng,
           used);
  }
}

// A cross street's mouth: cars in it, people on the crosswalk, signs at the corners.
void StreetBuilder::junction(const Crossing& crossing, Rng& rng) {
  Footprints used;
  const double width = crossing.x1 - crossing.x0;
  for (int side = 0; side < 2; ++side) {
    if (!crossing.side[side]) continue;
    for (int i = rng.integer(0, 2); i > 0; --i) {
      const bool far_lane = rng.chance(0.5);
      const double x = crossing.x0 + width * (far_lane ? 0.75 : 0.25);
      const double yaw = 0.5 * k_pi + rng.degrees(-3.0, 3.0) + (far_lane == (side == 0) ? k_pi : 0.0);
      car(x + rng.uniform(-0.3, 0.3), y_at(side, rng.uniform(4.0, 45.0)), yaw, layout_.road_z, rng, used);
    }
    if (rng.chance(0.35)) {
      for (int i = rng.integer(1, 3); i > 0; --i) {
        person(rng.uniform(crossing.x0 + 1.0, crossing.x1 - 1.0),
               y_at(side, rng.uniform(0.5, std::max(0.6, layout_.sidewalk_width[side] - 0.3))), layout_.road_z, rng,
               used);
      }
    }
    if (rng.chance(0.6)) {
      sign(crossing.x1 + 0.7, y_at(side, 0.6), sidewalk_top(side), side == 0 ? 0.0 : k_pi, rng, used);
    }
  }
}

StreetLayout make_layout(Rng& rng, double road_z) {
  StreetLayout l;
  l.road_z = road_z;
  const double lanes_draw = rng.uniform();  // two-lane streets are the most common
  l.lanes = lanes_draw < 0.65 ? 2 : (lanes_draw < 0.85 ? 3 : 4);
  l.lane_width = rng.uniform(3.0, 3.6);
  l.ego_lane = l.lanes == 2 ? 0 : rng.integer(0, 1);
  l.lanes_y0 = -(l.ego_lane + 0.5) * l.lane_width;
  for (int s = 0; s < 2; ++s) {
    l.parking_width[s] = rng.chance(0.65) ? rng.uniform(2.0, 2.5) : 0.0;
    l.curb[s] = rng.uniform(0.12, 0.18);
    l.sidewalk_width[s] = rng.uniform(2.0, 4.0);
  }
  l.edge_y[0] = l.lanes_y0 - l.parking_width[0];
  l.edge_y[1] = l.lanes_y0 + l.lanes * l.lane_width + l.parking_width[1];
  l.dash_length = rng.uniform(3.0, 6.0);
  l.dash_period = l.dash_length * rng.uniform(2.0, 3.0);
  l.dash_phase = rng.uniform(0.0, l.dash_period);
  return l;
}

TerrainField make_terrain(Rng& rng) {
  TerrainField f;
  const double amplitude[3] = {0.03, 0.02, 0.012}, wavelength[3] = {25.0, 9.0, 3.5};
  for (int i = 0; i < 3; ++i) {
    const double dir = rng.uniform(0.0, 2 * k_pi), k = 2 * k_pi / wavelength[i];
    f.a[i] = amplitude[i];
    f.kx[i] = k * std::cos(dir);
    f.ky[i] = k * std::sin(dir);
    f.phase[i] = rng.uniform(0.0, 2 * k_pi);
  }
  return f;
}

// Cross streets from before x_begin until each side has one beyond x_end.
std::vector<Crossing> make_crossings(Rng& rng, double x_begin, double x_end) {
  std::vector<Crossing> out;
  double x = x_begin - rng.uniform(20.0, 150.0);
  bool closed[2] = {false, false};
  while (!closed[0] || !closed[1]) {
    Crossing c;
    c.x0 = x;
    c.x1 = x + rng.uniform(7.0, 12.0);
    const double kind = rng.uniform();
    if (!out.empty() && kind < 0.2) c.side[1] = false;  // T-junctions; the first is a full one
    if (!out.empty() && kind >= 0.2 && kind < 0.4) c.side[0] = false;
    for (int s = 0; s < 2; ++s) closed[s] = closed[s] || (c.side[s] && c.x0 > x_end);
    out.push_back(c);
    x = c.x1 + rng.uniform(70.0, 220.0);
  }
  return out;
}

Rect xy_bounds(const Primitive& p) {
  double ex = p.hx, ey = p.hy;
  if (p.shape == ShapeKind::box) {
    ex = std::fabs(p.hx * p.cos_yaw) + std::fabs(p.hy * p.sin_yaw);
    ey = std::fabs(p.hx * p.sin_yaw) + std::fabs(p.hy * p.cos_yaw);
  }
  return around(p.cx, p.cy, ex + 1e-6, ey + 1e-6);
}

void build_grid(Scene& scene, double x0, double x1, double y0, double y1) {
  scene.cell_size = k_grid_cell;
  scene.grid_x0 = x0;
  scene.grid_y0 = y0;
  scene.grid_nx = static_cast<int>(std::ceil((x1 - x0) / k_grid_cell));
  scene.grid_ny = static_cast<int>(std::ceil((y1 - y0) / k_grid_cell));
  const auto cells = static_cast<std::size_t>(scene.grid_nx) * static_cast<std::size_t>(scene.grid_ny);
  // Each primitive's cell range, clipped; empty ranges for primitives outside.
  struct Range {
    int i0, i1, j0, j1;
  };
  std::vector<Range> ranges(scene.prims.size());
  std::vector<std::uint32_t> counts(cells + 1, 0);
  auto clamp_cell = [](double v, int n) {
    return static_cast<int>(std::clamp(std::floor(v), -1.0, static_cast<double>(n)));
  };
  for (std::size_t k = 0; k < scene.prims.size(); ++k) {
    const Rect b = xy_bounds(scene.prims[k]);
    Range r{std::max(0, clamp_cell((b.x0 - x0) / k_grid_cell, scene.grid_nx)),
            std::min(scene.grid_nx - 1, clamp_cell((b.x1 - x0) / k_grid_cell, scene.grid_nx)),
            std::max(0, clamp_cell((b.y0 - y0) / k_grid_cell, scene.grid_ny)),
            std::min(scene.grid_ny - 1, clamp_cell((b.y1 - y0) / k_grid_cell, scene.grid_ny))};
    ranges[k] = r;
    for (int j = r.j0; j <= r.j1; ++j) {
      for (int i = r.i0; i <= r.i1; ++i) ++counts[static_cast<std::size_t>(j) * scene.grid_nx + i + 1];
    }
  }
  for (std::size_t c = 0; c < cells; ++c) counts[c + 1] += counts[c];
  scene.cell_begin = counts;
  scene.cell_items.assign(counts[cells], 0);
  for (std::size_t k = 0; k < scene.prims.size(); ++k) {
    const Range& r = ranges[k];
    for (int j = r.j0; j <= r.j1; ++j) {
      for (int i = r.i0; i <= r.i1; ++i) {
        scene.cell_items[counts[static_cast<std::size_t>(j) * scene.grid_nx + i]++] = static_cast<std::uint32_t>(k);
      }
    }
  }
}

}  // namespace

SceneClass Scene::ground_label(double x, double y) const {
  if (y >= layout.edge_y[0] && y <= layout.edge_y[1]) return SceneClass::road;
  const int side = y < layout.edge_y[0] ? 0 : 1;
  auto it =
      std::upper_bound(crossings.begin(), crossings.end(), x, [](double v, const Crossing& c) { return v < c.x0; });
  if (it != crossings.begin() && x <= std::prev(it)->x1 && std::prev(it)->side[side]) return SceneClass::road;
  return SceneClass::terrain;
}

bool Scene::on_lane_marking(double x, double y) const {
  const StreetLayout& l = layout;
  auto it =
      std::upper_bound(crossings.begin(), crossings.end(), x, [](double v, const Crossing& c) { return v < c.x0; });
  if (it != crossings.begin() && x <= std::prev(it)->x1) return false;  // no lines across junctions
  const double rel = (y - l.lanes_y0) / l.lane_width;
  const double nearest = std::round(rel);
  if (nearest < 0 || nearest > l.lanes) return false;
  const double offset = std::fabs(rel - nearest) * l.lane_width;
  if (nearest == 0 || nearest == l.lanes) {  // solid edge lines
    const double inward = nearest == 0 ? y - l.lanes_y0 : l.lanes_y0 + l.lanes * l.lane_width - y;
    return inward >= 0.1 && inward <= 0.25;
  }
  if (offset > 0.06) return false;
  const double phase = std::fmod(x - l.dash_phase, l.dash_period);
  return (phase < 0 ? phase + l.dash_period : phase) < l.dash_length;
}

Scene build_street_scene(std::uint64_t seed, double road_z, double x_first, double x_last, double margin) {
  Scene scene;
  Rng layout_rng(hash_key({k_street_salt, seed, k_stream_layout}));
  scene.layout = make_layout(layout_rng, road_z);
  scene.terrain = make_terrain(layout_rng);
  const double x_begin = x_first - margin, x_end = x_last + margin;
  Rng crossing_rng(hash_key({k_street_salt, seed, k_stream_crossings}));
  scene.crossings = make_crossings(crossing_rng, x_begin, x_end);
  const std::vector<Crossing>& crossings = scene.crossings;

  StreetBuilder builder(scene);
  auto visible = [&](double a, double b) { return b > x_begin - 1.0 && a < x_end + 1.0; };
  for (int side = 0; side < 2; ++side) {
    std::size_t prev = 0;  // the first crossing has both sides
    for (std::size_t k = 1; k < crossings.size(); ++k) {
      if (!crossings[k].side[side]) continue;
      if (visible(crossings[prev].x1, crossings[k].x0)) {
        Rng rng = builder.begin_part({k_street_salt, seed, k_stream_block, static_cast<std::uint64_t>(side), prev});
        builder.block_side(side, crossings[prev].x1, crossings[k].x0, rng);
      }
      prev = k;
    }
  }
  for (std::size_t k = 0; k + 1 < crossings.size(); ++k) {
    if (!visible(crossings[k].x1, crossings[k + 1].x0)) continue;
    Rng rng = builder.begin_part({k_street_salt, seed, k_stream_road, k});
    builder.road_block(crossings[k].x1, crossings[k + 1].x0, rng);
  }
  for (std::size_t k = 0; k < crossings.size(); ++k) {
    if (!visible(crossings[k].x0 - 1.0, crossings[k].x1 + 1.0)) continue;
    Rng rng = builder.begin_part({k_street_salt, seed, k_stream_junction, k});
    builder.junction(crossings[k], rng);
  }
  build_grid(scene, x_begin, x_end, scene.layout.edge_y[0] - k_lot_depth, scene.layout.edge_y[1] + k_lot_depth);
  return scene;
}

}  // namespace lattice::sim::detail
