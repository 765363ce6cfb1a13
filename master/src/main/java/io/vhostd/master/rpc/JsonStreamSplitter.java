package io.vhostd.master.rpc;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.async.ByteArrayFeeder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.util.TokenBuffer;
import io.vhostd.rpc.RpcErrorCode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;

/**
 * Cuts an untrusted byte stream into JSON values with Jackson's non-blocking parser: values may arrive split across any
 * number of chunks, several may share a chunk, whitespace between them is skipped. Each value (with the whitespace
 * before it) may be at most {@code maxValueBytes} long; its nesting depth is bounded by the mapper's {@code
 * StreamReadConstraints}.
 *
 * <p>After the first {@link Failure} (malformed JSON, a value too large) the splitter is dead: a byte stream has no
 * resync point. Not thread-safe: one per connection, used from its event loop.
 */
final class JsonStreamSplitter {
    /** What {@link #feed} produces. */
    sealed interface Frame permits Value, Failure {}

    /** One complete JSON value. */
    record Value(JsonNode json) implements Frame {}

    /** The stream broke; the last frame the splitter produces. */
    record Failure(RpcErrorCode code, String message) implements Frame {}

    private final ObjectMapper mapper;
    private final long maxValueBytes;
    private final JsonParser parser;
    private final ByteArrayFeeder feeder;
    private TokenBuffer tokens;
    private int depth;
    private long fedBytes;
    private long valueStartBytes;
    private boolean failed;

    JsonStreamSplitter(ObjectMapper mapper, long maxValueBytes) {
        this.mapper = mapper;
        this.maxValueBytes = maxValueBytes;
        try {
            this.parser = mapper.getFactory().createNonBlockingByteArrayParser();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        this.feeder = (ByteArrayFeeder) parser.getNonBlockingInputFeeder();
    }

    /** True once a {@link Failure} was produced. */
    boolean failed() {
        return failed;
    }

    /**
     * Consumes {@code bytes[offset, offset + length)} (the array is not kept) and appends every value it completes, in
     * order, to {@code out}; then at most one {@link Failure}, after which nothing more is produced.
     */
    void feed(byte[] bytes, int offset, int length, List<Frame> out) {
        if (failed) {
            return;
        }
        try {
            // the parser consumed everything fed before (we read until NOT_AVAILABLE), so it accepts more input
            feeder.feedInput(bytes, offset, offset + length);
            fedBytes += length;
            JsonToken token;
            while ((token = parser.nextToken()) != JsonToken.NOT_AVAILABLE && token != null) {
                if (tokens == null) {
                    tokens = new TokenBuffer(parser);
                }
                tokens.copyCurrentEvent(parser);
                if (token.isStructStart()) {
                    depth++;
                } else if (token.isStructEnd()) {
                    depth--;
                }
                if (depth == 0) {
                    long endBytes = parser.currentLocation().getByteOffset();
                    if (endBytes - valueStartBytes > maxValueBytes) {
                        out.add(fail(RpcErrorCode.REQUEST_TOO_LARGE, tooLarge()));
                        return;
                    }
                    out.add(new Value(mapper.readTree(tokens.asParser(mapper))));
                    tokens = null;
                    valueStartBytes = endBytes;
                }
            }
            // untrusted input: the value being received (or whitespace) may not grow past the limit
            if (fedBytes - valueStartBytes > maxValueBytes) {
                out.add(fail(RpcErrorCode.REQUEST_TOO_LARGE, tooLarge()));
            }
        } catch (JsonProcessingException e) {
            out.add(fail(
                    RpcErrorCode.PARSE_ERROR,
                    "Parse error at byte " + parser.currentLocation().getByteOffset() + ": " + e.getOriginalMessage()));
        } catch (IOException e) {
            out.add(fail(RpcErrorCode.PARSE_ERROR, "Parse error: " + e.getMessage()));
        }
    }

    private String tooLarge() {
        return "request exceeds " + maxValueBytes + " bytes";
    }

    private Failure fail(RpcErrorCode code, String message) {
        failed = true;
        tokens = null;
        return new Failure(code, message);
    }
}
