// examples/thrift: a Thrift service written in Lua (greeter.lua).
namespace py greeter

struct Greeting {
  1: string text,
  2: i64 count,   // how many times this name was greeted
}

exception InvalidName {
  1: string message,
}

service Greeter {
  Greeting greet(1: string name) throws (1: InvalidName invalid),
  oneway void forget(1: string name),
}
