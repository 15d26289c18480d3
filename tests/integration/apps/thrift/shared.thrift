namespace py shared

struct Point {
  1: required i32 x,
  2: optional i32 y = 7,
}

service Base {
  string whoami(),
}
