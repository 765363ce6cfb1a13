package io.vhostd.master.rpc;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/** A test client that writes raw bytes and reads a stream of JSON values (blocking; tests bound it with @Timeout). */
final class RawConnection implements AutoCloseable {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private final SocketChannel channel;
    private JsonParser parser;

    RawConnection(Path socket) throws IOException {
        channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        channel.connect(UnixDomainSocketAddress.of(socket));
    }

    void write(String text) throws IOException {
        write(text.getBytes(StandardCharsets.UTF_8));
    }

    void write(byte[] bytes) throws IOException {
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }

    /** The next JSON value from the server, or null when the server closed the connection. */
    JsonNode read() throws IOException {
        if (parser == null) {
            parser = MAPPER.getFactory().createParser(Channels.newInputStream(channel));
        }
        try {
            if (parser.nextToken() == null) {
                return null;
            }
        } catch (IOException e) {
            // a unix socket closed by a peer with unread data reports ECONNRESET after the data: closed all the same
            if (e.getMessage() != null && e.getMessage().contains("reset")) {
                return null;
            }
            throw e;
        }
        return MAPPER.readTree(parser);
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
