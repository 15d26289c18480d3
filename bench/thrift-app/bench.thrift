// bench/thrift: the trivial service every server under test implements.
namespace cpp bench
namespace py bench

service Bench {
  i64 add(1: i64 a, 2: i64 b),
}
