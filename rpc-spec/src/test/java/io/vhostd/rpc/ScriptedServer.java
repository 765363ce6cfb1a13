package io.vhostd.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * A tiny JSON-RPC server for client tests: JDK {@link ServerSocketChannel} on a unix socket, one thread, reads
 * newline-terminated requests and lets a {@link Script} answer each one with raw bytes.
 */
final class ScriptedServer implements AutoCloseable {
    /** Answers one request; may write any bytes, in any number of writes, or close the connection. */
    @FunctionalInterface
    interface Script {
        void answer(JsonNode request, Connection connection) throws IOException;
    }

    /** The accepted connection, as seen by a {@link Script}. */
    static final class Connection {
        private final SocketChannel channel;

        Connection(SocketChannel channel) {
            this.channel = channel;
        }

        void write(String text) throws IOException {
            ByteBuffer buffer = ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8));
            while (buffer.hasRemaining()) {
                channel.write(buffer);
            }
        }

        void close() throws IOException {
            channel.close();
        }
    }

    private final Path path;
    private final ServerSocketChannel server;
    private final Thread thread;
    private final BlockingQueue<JsonNode> requests = new LinkedBlockingQueue<>();

    ScriptedServer(Path path, Script script) throws IOException {
        this.path = path;
        this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        this.thread = Thread.ofPlatform().daemon().name("scripted-rpc-server").start(() -> serve(script));
    }

    Path path() {
        return path;
    }

    /** Requests received so far, in order. */
    BlockingQueue<JsonNode> requests() {
        return requests;
    }

    private void serve(Script script) {
        while (server.isOpen()) {
            try (SocketChannel channel = server.accept()) {
                Connection connection = new Connection(channel);
                BufferedReader in = new BufferedReader(
                        new InputStreamReader(Channels.newInputStream(channel), StandardCharsets.UTF_8));
                String line;
                while (channel.isOpen() && (line = in.readLine()) != null) {
                    JsonNode request = Json.MAPPER.readTree(line);
                    requests.add(request);
                    script.answer(request, connection);
                }
            } catch (IOException e) {
                // the script closed the connection, or the test closed the server: accept the next one or stop
            }
        }
    }

    @Override
    public void close() throws IOException {
        server.close();
        try {
            thread.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
