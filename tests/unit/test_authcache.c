/* Tests of the auth cache (src/conn/authcache.c): keyed HMAC contexts that
 * give what one-shot HMAC gives, shared by threads, and a nonce pool that a
 * forked child never shares; and the kernel randomness behind it. */
#include "conn/authcache.h"
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(random_fills)
{
    uint8_t a[64] = {0}, b[64] = {0};
    CHECK_INT(mpci_random(a, sizeof a), 0);
    CHECK_INT(mpci_random(b, sizeof b), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
    int nonzero = 0;
    for (size_t i = 0; i < sizeof a; i++)
        nonzero += a[i] != 0;
    CHECK(nonzero > 32);
    CHECK_INT(mpci_random(a, 0), 0);
}

/* The keyed contexts give what one-shot HMAC gives, for every digest, the
 * first time and again (re-initialised, the key kept), and never use their
 * key for another one. */
TEST(auth_cache_macs_match_one_shot)
{
    static const char *const names[] = {"md5", "sha256", "sha384", "sha3_256", "sha3_384"};
    const uint8_t key[] = "secret password", other[] = "secret passwore";
    mpci_auth_cache *k = mpci_auth_cache_new(key, 15);
    CHECK(k != NULL);
    uint8_t msg[300], got[64], want[64];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 7 + 1);
    for (int round = 0; round < 3; round++) {
        for (size_t d = 0; d < sizeof names / sizeof *names; d++) {
            for (size_t len = 0; len <= sizeof msg; len += 37 + round) {
                int n = mpci_hmac(names[d], key, 15, msg, len, want);
                CHECK(n > 0);
                CHECK_INT(mpci_mac_compute(k, names[d], key, 15, msg, len, got), n);
                CHECK_MEM(got, want, (size_t)n);
                CHECK(k->keyed[d] != NULL); /* kept for the next one */
                /* another key (or length) goes one-shot, with that key */
                CHECK_INT(mpci_hmac(names[d], other, 15, msg, len, want), n);
                CHECK_INT(mpci_mac_compute(k, names[d], other, 15, msg, len, got), n);
                CHECK_MEM(got, want, (size_t)n);
                CHECK_INT(mpci_hmac(names[d], key, 14, msg, len, want), n);
                CHECK_INT(mpci_mac_compute(k, names[d], key, 14, msg, len, got), n);
                CHECK_MEM(got, want, (size_t)n);
            }
        }
    }
    CHECK_INT(mpci_mac_compute(k, "sha1", key, 15, msg, 10, got), -EINVAL);
    CHECK_INT(mpci_mac_compute(NULL, "sha256", key, 15, msg, 10, got), 32);
    mpci_auth_cache_free(k);
    mpci_auth_cache_free(NULL);
}

struct mac_job {
    mpci_auth_cache *k;
    const uint8_t *want; /* HMAC-SHA256 of "msg" under the key */
    int bad;
};

static void *mac_thread(void *arg)
{
    struct mac_job *j = arg;
    for (int i = 0; i < 2000; i++) {
        uint8_t got[32];
        if (mpci_mac_compute(j->k, "sha256", j->k->key, j->k->keylen, (const uint8_t *)"msg", 3,
                             got) != 32 ||
            memcmp(got, j->want, 32) != 0)
            j->bad++;
    }
    return NULL;
}

/* One set of keyed contexts shared by threads, as one opts shared by
 * clients in several threads: every MAC right, whoever holds the lock. */
TEST(auth_cache_shared_by_threads)
{
    const uint8_t key[] = "k";
    uint8_t want[32];
    CHECK_INT(mpci_hmac("sha256", key, 1, (const uint8_t *)"msg", 3, want), 32);
    mpci_auth_cache *k = mpci_auth_cache_new(key, 1);
    CHECK(k != NULL);
    struct mac_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct mac_job){.k = k, .want = want};
        CHECK_INT(pthread_create(&t[i], NULL, mac_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(jobs[i].bad, 0);
    }
    mpci_auth_cache_free(k);
}

/* The nonce pool: every nonce differs from the others, and a forked child
 * never draws what its parent draws (the pool's page is wiped in the
 * child). */
TEST(auth_cache_nonces_fresh_after_fork)
{
    mpci_auth_cache *c = mpci_auth_cache_new((const uint8_t *)"k", 1);
    CHECK(c != NULL);
    CHECK(c->pool != NULL); /* Linux >= 4.14 wipes on fork */
    enum { N = 100 };
    static uint8_t seen[N][MPCI_NONCE_LEN];
    for (int i = 0; i < N; i++) {
        CHECK_INT(mpci_nonce(c, seen[i]), 0);
        for (int j = 0; j < i; j++)
            CHECK(memcmp(seen[i], seen[j], MPCI_NONCE_LEN) != 0);
    }
    int fds[2];
    CHECK_INT(pipe(fds), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        uint8_t mine[MPCI_NONCE_LEN];
        int ok = mpci_nonce(c, mine) == 0 && write(fds[1], mine, sizeof mine) == sizeof mine;
        _exit(ok ? 0 : 1);
    }
    int status;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uint8_t child[MPCI_NONCE_LEN], parent[MPCI_NONCE_LEN];
    CHECK_INT(read(fds[0], child, sizeof child), sizeof child);
    CHECK_INT(mpci_nonce(c, parent), 0);
    CHECK(memcmp(child, parent, MPCI_NONCE_LEN) != 0);
    close(fds[0]);
    close(fds[1]);
    mpci_auth_cache_free(c);
    uint8_t none[MPCI_NONCE_LEN];
    CHECK_INT(mpci_nonce(NULL, none), 0);
}

TESTLIB_MAIN
