// Every IDL construct the codec handles: includes, namespaces, typedefs,
// enums, consts, structs with defaults and requiredness, unions,
// exceptions, nested containers and a service that extends another.
include "shared.thrift"

namespace py codec
namespace lua codec

typedef string Name
typedef list<shared.Point> Path
typedef map<string, list<i32>> Buckets

const i32 MAX_ITEMS = 100
const string GREETING = "hello"
const list<i32> PRIMES = [2, 3, 5, 7]
const map<string, i32> WEIGHTS = {"a": 1, "b": 2}
const shared.Color DEFAULT_COLOR = shared.Color.GREEN

enum Kind {
  ONE,
  TWO,
  FIVE = 5
}

struct Everything {
  1: bool a_bool
  2: byte a_byte
  3: i16 an_i16
  4: i32 an_i32
  5: i64 an_i64
  6: double a_double
  7: string a_string
  8: binary a_binary
  9: Name a_name
  10: shared.Color a_color
  11: shared.UserId a_user
  12: list<i32> ints
  13: set<string> names
  14: map<i32, string> by_id
  15: Path path
  16: Buckets buckets
  17: list<list<map<string, set<i64>>>> deep
  18: optional shared.Point origin
  19: map<shared.Point, string> by_point
  20: list<binary> blobs
  21: Kind kind
}

struct Defaults {
  1: i32 n = 7
  2: string s = "seven"
  3: optional i32 opt_n = 8
  4: required i32 req_n
  5: list<i32> l = [1, 2]
  6: shared.Color c = shared.Color.BLUE
  7: bool b = true
  8: double d = 1.5
  9: shared.Point p = {"x": 1, "y": 2}
}

union Value {
  1: i64 int_value
  2: string str_value
  3: list<Value> list_value
}

struct Tree {
  1: i32 value
  2: list<Tree> children
}

exception Boom {
  1: string message
  2: i32 code
}

service Things extends shared.Base {
  Everything get(1: i64 id, 2: Name name) throws (1: Boom boom, 2: shared.NotFound nf)
  void put(1: required Everything e)
  oneway void fire(1: string what)
  Value evaluate(1: Tree t, 2: optional Value hint)
  list<Tree> forest(1: map<string, Tree> trees)
}
