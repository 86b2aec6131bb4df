// A long-lived @grpc/grpc-js-xds client driven over stdin: each line "spread N" sends N unary
// RPCs to the xDS target given as argv[2] and prints a JSON object of replies per server.
const grpc = require('@grpc/grpc-js');
require('@grpc/grpc-js-xds').register();
const readline = require('readline');

const identity = (b) => b;
const Echo = grpc.makeGenericClientConstructor({
  Call: { path: '/echo.Echo/Call', requestStream: false, responseStream: false,
          requestSerialize: identity, requestDeserialize: identity,
          responseSerialize: identity, responseDeserialize: identity },
}, 'Echo');
const client = new Echo(process.argv[2], grpc.credentials.createInsecure());

function call() {
  return new Promise((resolve, reject) => {
    client.Call(Buffer.from('hi'), { deadline: Date.now() + 5000 }, (err, reply) =>
      err ? reject(err) : resolve(reply.toString()));
  });
}

async function spread(n) {
  const counts = {};
  for (let i = 0; i < n; i++) {
    const who = await call();
    counts[who] = (counts[who] || 0) + 1;
  }
  return counts;
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === 'spread') {
    try {
      process.stdout.write(JSON.stringify({ counts: await spread(Number(arg)) }) + '\n');
    } catch (e) {
      process.stdout.write(JSON.stringify({ error: String(e.message || e) }) + '\n');
    }
  }
});
lines.on('close', () => { client.close(); process.exit(0); });
