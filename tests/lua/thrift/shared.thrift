// Included by codec.thrift: a namespace, a typedef, an enum, a struct, an
// exception and a service that codec.thrift's service extends.
namespace py shared
namespace lua shared

typedef i64 UserId

enum Color {
  RED = 1,
  GREEN = 2,
  BLUE = 10
}

struct Point {
  1: required i32 x
  2: required i32 y
}

exception NotFound {
  1: string what
  2: optional UserId id
}

service Base {
  string ping()
  Point echo_point(1: Point p) throws (1: NotFound nf)
}
