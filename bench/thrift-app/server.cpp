// bench/thrift's C++ peer: the Bench service with Apache Thrift's
// TNonblockingServer (Debian's libthrift-dev), one IO thread, no thread
// pool, THeaderProtocol (binary).
//
//   server PORT
//
// TNonblockingServer speaks THeader when it has no output protocol factory:
// it then keeps each frame's length for THeaderTransport and uses one
// THeaderProtocol for both directions (TNonblockingServer::getHeaderTransport).
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <thrift/protocol/THeaderProtocol.h>
#include <thrift/server/TNonblockingServer.h>
#include <thrift/transport/TNonblockingServerSocket.h>

#include "Bench.h"

using apache::thrift::protocol::THeaderProtocolFactory;
using apache::thrift::server::TNonblockingServer;
using apache::thrift::transport::TNonblockingServerSocket;

class Handler : public bench::BenchIf {
public:
  int64_t add(const int64_t a, const int64_t b) override { return a + b; }
};

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: server PORT\n");
    return 2;
  }
  auto processor = std::make_shared<bench::BenchProcessor>(std::make_shared<Handler>());
  auto socket = std::make_shared<TNonblockingServerSocket>("127.0.0.1", std::atoi(argv[1]));
  TNonblockingServer server(processor, std::make_shared<THeaderProtocolFactory>(), socket);
  server.setNumIOThreads(1);
  server.setOutputProtocolFactory(nullptr);  // THeader: see above
  server.serve();
  return 0;
}
