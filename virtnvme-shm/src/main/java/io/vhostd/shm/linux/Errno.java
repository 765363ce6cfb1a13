package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * Linux {@code errno} values for x86_64 ({@code <asm-generic/errno-base.h>}, {@code <asm-generic/errno.h>}), their
 * names and their {@code strerror(3)} texts. {@code EWOULDBLOCK} equals {@link #EAGAIN} and {@code EDEADLOCK} equals
 * {@link #EDEADLK}; {@link #name(int)} answers the primary name.
 */
// restricted FFM methods are this package's job; the JVM runs with --enable-native-access
@SuppressWarnings("restricted")
public final class Errno {
    public static final int EPERM = 1;
    public static final int ENOENT = 2;
    public static final int ESRCH = 3;
    public static final int EINTR = 4;
    public static final int EIO = 5;
    public static final int ENXIO = 6;
    public static final int E2BIG = 7;
    public static final int ENOEXEC = 8;
    public static final int EBADF = 9;
    public static final int ECHILD = 10;
    public static final int EAGAIN = 11;
    public static final int ENOMEM = 12;
    public static final int EACCES = 13;
    public static final int EFAULT = 14;
    public static final int ENOTBLK = 15;
    public static final int EBUSY = 16;
    public static final int EEXIST = 17;
    public static final int EXDEV = 18;
    public static final int ENODEV = 19;
    public static final int ENOTDIR = 20;
    public static final int EISDIR = 21;
    public static final int EINVAL = 22;
    public static final int ENFILE = 23;
    public static final int EMFILE = 24;
    public static final int ENOTTY = 25;
    public static final int ETXTBSY = 26;
    public static final int EFBIG = 27;
    public static final int ENOSPC = 28;
    public static final int ESPIPE = 29;
    public static final int EROFS = 30;
    public static final int EMLINK = 31;
    public static final int EPIPE = 32;
    public static final int EDOM = 33;
    public static final int ERANGE = 34;
    public static final int EDEADLK = 35;
    public static final int ENAMETOOLONG = 36;
    public static final int ENOLCK = 37;
    public static final int ENOSYS = 38;
    public static final int ENOTEMPTY = 39;
    public static final int ELOOP = 40;
    public static final int ENOMSG = 42;
    public static final int EIDRM = 43;
    public static final int ECHRNG = 44;
    public static final int EL2NSYNC = 45;
    public static final int EL3HLT = 46;
    public static final int EL3RST = 47;
    public static final int ELNRNG = 48;
    public static final int EUNATCH = 49;
    public static final int ENOCSI = 50;
    public static final int EL2HLT = 51;
    public static final int EBADE = 52;
    public static final int EBADR = 53;
    public static final int EXFULL = 54;
    public static final int ENOANO = 55;
    public static final int EBADRQC = 56;
    public static final int EBADSLT = 57;
    public static final int EBFONT = 59;
    public static final int ENOSTR = 60;
    public static final int ENODATA = 61;
    public static final int ETIME = 62;
    public static final int ENOSR = 63;
    public static final int ENONET = 64;
    public static final int ENOPKG = 65;
    public static final int EREMOTE = 66;
    public static final int ENOLINK = 67;
    public static final int EADV = 68;
    public static final int ESRMNT = 69;
    public static final int ECOMM = 70;
    public static final int EPROTO = 71;
    public static final int EMULTIHOP = 72;
    public static final int EDOTDOT = 73;
    public static final int EBADMSG = 74;
    public static final int EOVERFLOW = 75;
    public static final int ENOTUNIQ = 76;
    public static final int EBADFD = 77;
    public static final int EREMCHG = 78;
    public static final int ELIBACC = 79;
    public static final int ELIBBAD = 80;
    public static final int ELIBSCN = 81;
    public static final int ELIBMAX = 82;
    public static final int ELIBEXEC = 83;
    public static final int EILSEQ = 84;
    public static final int ERESTART = 85;
    public static final int ESTRPIPE = 86;
    public static final int EUSERS = 87;
    public static final int ENOTSOCK = 88;
    public static final int EDESTADDRREQ = 89;
    public static final int EMSGSIZE = 90;
    public static final int EPROTOTYPE = 91;
    public static final int ENOPROTOOPT = 92;
    public static final int EPROTONOSUPPORT = 93;
    public static final int ESOCKTNOSUPPORT = 94;
    public static final int EOPNOTSUPP = 95;
    public static final int EPFNOSUPPORT = 96;
    public static final int EAFNOSUPPORT = 97;
    public static final int EADDRINUSE = 98;
    public static final int EADDRNOTAVAIL = 99;
    public static final int ENETDOWN = 100;
    public static final int ENETUNREACH = 101;
    public static final int ENETRESET = 102;
    public static final int ECONNABORTED = 103;
    public static final int ECONNRESET = 104;
    public static final int ENOBUFS = 105;
    public static final int EISCONN = 106;
    public static final int ENOTCONN = 107;
    public static final int ESHUTDOWN = 108;
    public static final int ETOOMANYREFS = 109;
    public static final int ETIMEDOUT = 110;
    public static final int ECONNREFUSED = 111;
    public static final int EHOSTDOWN = 112;
    public static final int EHOSTUNREACH = 113;
    public static final int EALREADY = 114;
    public static final int EINPROGRESS = 115;
    public static final int ESTALE = 116;
    public static final int EUCLEAN = 117;
    public static final int ENOTNAM = 118;
    public static final int ENAVAIL = 119;
    public static final int EISNAM = 120;
    public static final int EREMOTEIO = 121;
    public static final int EDQUOT = 122;
    public static final int ENOMEDIUM = 123;
    public static final int EMEDIUMTYPE = 124;
    public static final int ECANCELED = 125;
    public static final int ENOKEY = 126;
    public static final int EKEYEXPIRED = 127;
    public static final int EKEYREVOKED = 128;
    public static final int EKEYREJECTED = 129;
    public static final int EOWNERDEAD = 130;
    public static final int ENOTRECOVERABLE = 131;
    public static final int ERFKILL = 132;
    public static final int EHWPOISON = 133;
    /** Alias of {@link #EAGAIN}. */
    public static final int EWOULDBLOCK = EAGAIN;
    /** Alias of {@link #EDEADLK}. */
    public static final int EDEADLOCK = EDEADLK;

    /** XSI {@code int strerror_r(int, char *, size_t)}: fills the caller's buffer, so no static storage is read. */
    private static final Optional<MethodHandle> XPG_STRERROR_R = NativeSupport.findOptional("__xpg_strerror_r")
            .map(symbol -> NativeSupport.LINKER.downcallHandle(
                    symbol, FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG)));

    private static final int STRERROR_BUFFER_BYTES = 256;

    private Errno() {}

    /** The symbolic name of {@code errno} (e.g. {@code "EBADF"}), or {@code "E?<n>"} for a number Linux does not define. */
    public static String name(int errno) {
        return switch (errno) {
            case EPERM -> "EPERM";
            case ENOENT -> "ENOENT";
            case ESRCH -> "ESRCH";
            case EINTR -> "EINTR";
            case EIO -> "EIO";
            case ENXIO -> "ENXIO";
            case E2BIG -> "E2BIG";
            case ENOEXEC -> "ENOEXEC";
            case EBADF -> "EBADF";
            case ECHILD -> "ECHILD";
            case EAGAIN -> "EAGAIN";
            case ENOMEM -> "ENOMEM";
            case EACCES -> "EACCES";
            case EFAULT -> "EFAULT";
            case ENOTBLK -> "ENOTBLK";
            case EBUSY -> "EBUSY";
            case EEXIST -> "EEXIST";
            case EXDEV -> "EXDEV";
            case ENODEV -> "ENODEV";
            case ENOTDIR -> "ENOTDIR";
            case EISDIR -> "EISDIR";
            case EINVAL -> "EINVAL";
            case ENFILE -> "ENFILE";
            case EMFILE -> "EMFILE";
            case ENOTTY -> "ENOTTY";
            case ETXTBSY -> "ETXTBSY";
            case EFBIG -> "EFBIG";
            case ENOSPC -> "ENOSPC";
            case ESPIPE -> "ESPIPE";
            case EROFS -> "EROFS";
            case EMLINK -> "EMLINK";
            case EPIPE -> "EPIPE";
            case EDOM -> "EDOM";
            case ERANGE -> "ERANGE";
            case EDEADLK -> "EDEADLK";
            case ENAMETOOLONG -> "ENAMETOOLONG";
            case ENOLCK -> "ENOLCK";
            case ENOSYS -> "ENOSYS";
            case ENOTEMPTY -> "ENOTEMPTY";
            case ELOOP -> "ELOOP";
            case ENOMSG -> "ENOMSG";
            case EIDRM -> "EIDRM";
            case ECHRNG -> "ECHRNG";
            case EL2NSYNC -> "EL2NSYNC";
            case EL3HLT -> "EL3HLT";
            case EL3RST -> "EL3RST";
            case ELNRNG -> "ELNRNG";
            case EUNATCH -> "EUNATCH";
            case ENOCSI -> "ENOCSI";
            case EL2HLT -> "EL2HLT";
            case EBADE -> "EBADE";
            case EBADR -> "EBADR";
            case EXFULL -> "EXFULL";
            case ENOANO -> "ENOANO";
            case EBADRQC -> "EBADRQC";
            case EBADSLT -> "EBADSLT";
            case EBFONT -> "EBFONT";
            case ENOSTR -> "ENOSTR";
            case ENODATA -> "ENODATA";
            case ETIME -> "ETIME";
            case ENOSR -> "ENOSR";
            case ENONET -> "ENONET";
            case ENOPKG -> "ENOPKG";
            case EREMOTE -> "EREMOTE";
            case ENOLINK -> "ENOLINK";
            case EADV -> "EADV";
            case ESRMNT -> "ESRMNT";
            case ECOMM -> "ECOMM";
            case EPROTO -> "EPROTO";
            case EMULTIHOP -> "EMULTIHOP";
            case EDOTDOT -> "EDOTDOT";
            case EBADMSG -> "EBADMSG";
            case EOVERFLOW -> "EOVERFLOW";
            case ENOTUNIQ -> "ENOTUNIQ";
            case EBADFD -> "EBADFD";
            case EREMCHG -> "EREMCHG";
            case ELIBACC -> "ELIBACC";
            case ELIBBAD -> "ELIBBAD";
            case ELIBSCN -> "ELIBSCN";
            case ELIBMAX -> "ELIBMAX";
            case ELIBEXEC -> "ELIBEXEC";
            case EILSEQ -> "EILSEQ";
            case ERESTART -> "ERESTART";
            case ESTRPIPE -> "ESTRPIPE";
            case EUSERS -> "EUSERS";
            case ENOTSOCK -> "ENOTSOCK";
            case EDESTADDRREQ -> "EDESTADDRREQ";
            case EMSGSIZE -> "EMSGSIZE";
            case EPROTOTYPE -> "EPROTOTYPE";
            case ENOPROTOOPT -> "ENOPROTOOPT";
            case EPROTONOSUPPORT -> "EPROTONOSUPPORT";
            case ESOCKTNOSUPPORT -> "ESOCKTNOSUPPORT";
            case EOPNOTSUPP -> "EOPNOTSUPP";
            case EPFNOSUPPORT -> "EPFNOSUPPORT";
            case EAFNOSUPPORT -> "EAFNOSUPPORT";
            case EADDRINUSE -> "EADDRINUSE";
            case EADDRNOTAVAIL -> "EADDRNOTAVAIL";
            case ENETDOWN -> "ENETDOWN";
            case ENETUNREACH -> "ENETUNREACH";
            case ENETRESET -> "ENETRESET";
            case ECONNABORTED -> "ECONNABORTED";
            case ECONNRESET -> "ECONNRESET";
            case ENOBUFS -> "ENOBUFS";
            case EISCONN -> "EISCONN";
            case ENOTCONN -> "ENOTCONN";
            case ESHUTDOWN -> "ESHUTDOWN";
            case ETOOMANYREFS -> "ETOOMANYREFS";
            case ETIMEDOUT -> "ETIMEDOUT";
            case ECONNREFUSED -> "ECONNREFUSED";
            case EHOSTDOWN -> "EHOSTDOWN";
            case EHOSTUNREACH -> "EHOSTUNREACH";
            case EALREADY -> "EALREADY";
            case EINPROGRESS -> "EINPROGRESS";
            case ESTALE -> "ESTALE";
            case EUCLEAN -> "EUCLEAN";
            case ENOTNAM -> "ENOTNAM";
            case ENAVAIL -> "ENAVAIL";
            case EISNAM -> "EISNAM";
            case EREMOTEIO -> "EREMOTEIO";
            case EDQUOT -> "EDQUOT";
            case ENOMEDIUM -> "ENOMEDIUM";
            case EMEDIUMTYPE -> "EMEDIUMTYPE";
            case ECANCELED -> "ECANCELED";
            case ENOKEY -> "ENOKEY";
            case EKEYEXPIRED -> "EKEYEXPIRED";
            case EKEYREVOKED -> "EKEYREVOKED";
            case EKEYREJECTED -> "EKEYREJECTED";
            case EOWNERDEAD -> "EOWNERDEAD";
            case ENOTRECOVERABLE -> "ENOTRECOVERABLE";
            case ERFKILL -> "ERFKILL";
            case EHWPOISON -> "EHWPOISON";
            default -> "E?" + errno;
        };
    }

    /** The C library's message for {@code errno} ({@code strerror(3)}), e.g. {@code "Bad file descriptor"}. */
    public static String strerror(int errno) {
        if (XPG_STRERROR_R.isPresent()) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buffer = arena.allocate(STRERROR_BUFFER_BYTES);
                int rc = (int) XPG_STRERROR_R.get().invokeExact(errno, buffer, (long) STRERROR_BUFFER_BYTES);
                if (rc == 0) {
                    return buffer.getString(0);
                }
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
        }
        return "Unknown error " + errno;
    }
}
