// An HTTP backend for stompede, in Node with no dependencies
// (docs/applications.md). It serves the route
//
//     [[app.routes]]
//     match = "/app/ask.#"
//     url = "http://127.0.0.1:PORT/ask"
//     publish = ["/topic/answers.#"]
//
// like a Spring @MessageMapping("/ask.{topic}") method: the broker POSTs each SEND
// as JSON ({destination, login, roles, headers, body}); the answer's messages
// are published in order, here one to the sender's own /user/queue/replies and
// one to /topic/answers.TOPIC.
//
//     node examples/backends/ask-http.mjs 0     # prints "listening PORT"
//
// tests/e2e/app-routes.test.mjs runs it.

import http from 'node:http';

const server = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (chunk) => { raw += chunk; });
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/ask') {
      res.writeHead(404).end();
      return;
    }
    const request = JSON.parse(raw);
    const topic = request.destination.replace(/^\/app\/ask\./, '');
    const answer = `${request.login} asked about ${topic}: ${request.body}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      messages: [
        { destination: '/user/queue/replies', body: answer },
        { destination: `/topic/answers.${topic}`, headers: { 'asked-by': request.login }, body: answer },
      ],
    }));
  });
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
