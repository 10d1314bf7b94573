/* UTF-8 in one place: the writer every encoder uses, the lenient reader of
 * the text forms and the strict validator of str values. */
#include "base/utf8.h"

#include <string.h>

size_t mpci_utf8_put(uint8_t *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t mpci_utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    size_t k = *i;
    unsigned c = s[k];
    int need;
    uint32_t cp, min;
    if (c < 0x80) {
        *i = k + 1;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        need = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        need = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        need = 3, cp = c & 0x07, min = 0x10000;
    } else {
        *i = k + 1;
        return c;
    }
    if (k + (size_t)need >= len) {
        *i = k + 1;
        return c;
    }
    for (int t = 1; t <= need; t++) {
        if ((s[k + t] & 0xC0) != 0x80) {
            *i = k + 1;
            return c;
        }
        cp = (cp << 6) | (s[k + t] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF) {
        *i = k + 1;
        return c;
    }
    *i = k + 1 + (size_t)need;
    return cp;
}

/* Length of the valid sequence at s[i] (strict, or also surrogates
 * ED A0..BF 80..BF when allowed), 0 when none starts there; sets *sur when
 * it is a surrogate. */
static size_t seq_len(const unsigned char *s, size_t n, size_t i, int allow_surrogates, int *sur)
{
    unsigned c = s[i];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED && !allow_surrogates)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n - i <= need)
        return 0;
    if (s[i + 1] < lo || s[i + 1] > hi)
        return 0;
    for (size_t k = 2; k <= need; k++)
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
    if (c == 0xED && s[i + 1] >= 0xA0)
        *sur = 1;
    return need + 1;
}

static int utf8_scan(const unsigned char *s, size_t n, int allow_surrogates, int *sur)
{
    for (size_t i = 0; i < n;) {
        size_t k = seq_len(s, n, i, allow_surrogates, sur);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

size_t mpci_utf8_escape(uint8_t *out, const void *p, size_t n, int allow_surrogates)
{
    const unsigned char *s = p;
    size_t o = 0;
    int sur = 0;
    for (size_t i = 0; i < n;) {
        size_t k = seq_len(s, n, i, allow_surrogates, &sur);
        if (k) {
            if (out)
                memcpy(out + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        /* One byte escaped at a time is what CPython's surrogateescape
         * gives: an invalid range holds a lead byte and continuation bytes,
         * none of which can start a valid sequence. */
        uint8_t tmp[MPCI_UTF8_MAX];
        o += mpci_utf8_put(out ? out + o : tmp, 0xDC00u + s[i]);
        i++;
    }
    return o;
}

int mpci_utf8_valid(const void *p, size_t n)
{
    int sur = 0;
    return utf8_scan(p, n, 0, &sur);
}

int mpci_utf8_check(const void *p, size_t n)
{
    int sur = 0;
    if (!utf8_scan(p, n, 1, &sur))
        return -1;
    return sur;
}
