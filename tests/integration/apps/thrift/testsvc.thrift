// The Thrift service the integration tests serve (thriftapp.lua) and call
// (tools/thrift_client.py): every field type, containers, exceptions,
// oneway, and methods that report what the server saw.
include "shared.thrift"

namespace py testsvc

enum Color { RED = 1, GREEN = 2, BLUE = 3 }

typedef i64 UserId

struct AllTypes {
  1: bool b,
  2: i8 by,
  3: i16 s,
  4: i32 i,
  5: i64 l,
  6: double d,
  7: string str,
  8: binary bin,
  9: list<i32> li,
  10: set<string> ss,
  11: map<string, shared.Point> mp,
  12: Color color,
  13: optional shared.Point pt,
  14: list<list<i64>> nested,
}

exception NotFound {
  1: string message,
  2: UserId id,
  3: optional i32 code, // (as baseplate.thrift's Error: test-prometheus)
}

exception Undeclared {
  1: string message,
}

service Test extends shared.Base {
  AllTypes echo(1: AllTypes value),
  i64 add(1: i64 a, 2: i64 b),
  string get(1: UserId id) throws (1: NotFound nf),
  void fail(1: string how),
  oneway void note(1: string text),
  string last_note(),
  map<string, string> headers(),
  string trace(),
  double budget(),
  void sleep(1: double seconds),
}
