/*
 * test_choose.c: the tuner's rule for naming a winner (tuner/choose.c), on made-up measurements.
 */
#include "choose.h"
#include "test.h"

#include <string.h>

int main(int argc, char **argv) {
    test_verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    int second;

    CHECK_INT("nothing measured: no winner", choose_winner(NULL, 0, 0.01, &second), -1);
    CHECK_INT("...and no runner-up", second, -1);
    choose_in none[] = { { "flash_v2", "a", 0, 0, 0 }, { "flash_v2", "b", -1, 0, 0 } };
    CHECK_INT("variants without a time cannot win", choose_winner(none, 2, 0.01, &second), -1);

    choose_in one[] = { { "flash_v2", "b", 1.0, 0, 0 } };
    CHECK_INT("alone: the winner", choose_winner(one, 1, 0.01, &second), 0);
    CHECK_INT("alone: no runner-up", second, -1);

    /* b is 3% faster than a: a clear winner whatever the names say */
    choose_in clear[] = { { "flash_v2", "a", 1.03, 0, 0 }, { "flash_v2", "b", 1.00, 0, 0 }, { "flash_v1", "a", 2.0, 0, 0 } };
    CHECK_INT("faster by more than the band: the fastest wins", choose_winner(clear, 3, 0.01, &second), 1);
    CHECK_INT("the runner-up is the next fastest", second, 0);

    /* within 1%: the first by family and parameter text, in whatever order they come */
    choose_in tie[] = { { "flash_v2", "z", 1.000, 0, 0 }, { "flash_v2", "m", 1.008, 0, 0 }, { "flash_v2", "a", 1.02, 0, 0 } };
    CHECK_INT("within the band: the first by name", choose_winner(tie, 3, 0.01, &second), 1);
    CHECK_INT("the runner-up of a tie-break is the faster one", second, 0);
    choose_in tie2[] = { tie[2], tie[1], tie[0] };
    CHECK_INT("the same choice in another order", choose_winner(tie2, 3, 0.01, NULL), 1);
    choose_in fam[] = { { "flash_v2", "a", 1.000, 0, 0 }, { "flash_v1", "z", 1.005, 0, 0 } };
    CHECK_INT("the family name comes before the parameters", choose_winner(fam, 2, 0.01, NULL), 1);

    /* noise widens the band: 2% apart, but one of them varied by 3% between rounds */
    choose_in noisy[] = { { "flash_v2", "z", 1.00, 0.03, 0 }, { "flash_v2", "a", 1.02, 0.005, 0 } };
    CHECK_INT("a difference inside the measured noise is a tie", choose_winner(noisy, 2, 0.01, NULL), 1);
    choose_in quiet[] = { { "flash_v2", "z", 1.00, 0.005, 0 }, { "flash_v2", "a", 1.02, 0.005, 0 } };
    CHECK_INT("the same difference above the noise is a win", choose_winner(quiet, 2, 0.01, NULL), 0);
    choose_in other[] = { { "flash_v2", "z", 1.00, 0, 0 }, { "flash_v2", "a", 1.02, 0.025, 0 } };
    CHECK_INT("either variant's noise counts", choose_winner(other, 2, 0.01, NULL), 1);

    /* the built-in default wins any tie it is in, whatever the names, and nothing else */
    choose_in dflt[] = { { "flash_v2", "a", 1.000, 0, 0 }, { "flash_v2", "z", 1.015, 0, 1 }, { "flash_v1", "a", 1.01, 0, 0 } };
    CHECK_INT("a tie with the default: the default wins", choose_winner(dflt, 3, 0.02, &second), 1);
    CHECK_INT("...the runner-up is the fastest of the rest", second, 0);
    choose_in dflt_out[] = { { "flash_v2", "a", 1.000, 0, 0 }, { "flash_v2", "z", 1.03, 0, 1 } };
    CHECK_INT("a default slower by more than the band does not", choose_winner(dflt_out, 2, 0.02, NULL), 0);
    double dr[] = { 1.00, 1.00, 1.00,   1.01, 1.01, 1.01 };
    choose_in pd[] = { { "flash_v2", "a", 1.00, 0, 0 }, { "flash_v2", "z", 1.01, 0, 1 } };
    CHECK_INT("paired: a tie with the default, the default wins", choose_paired(pd, dr, 2, 3, 0.02, NULL), 1);

    /* finalists timed in interleaved rounds */
    CHECK_INT("paired: nothing measured", choose_paired(NULL, NULL, 0, 3, 0.01, &second), -1);
    choose_in pv[] = { { "flash_v2", "z", 1.00, 0, 0 }, { "flash_v2", "a", 1.02, 0, 0 } };
    double steady[] = { 1.00, 0.99, 1.01,   1.02, 1.01, 1.03 };      /* z ahead in every round */
    CHECK_INT("paired: 2% ahead in every round wins", choose_paired(pv, steady, 2, 3, 0.01, &second), 0);
    CHECK_INT("...the other is the runner-up", second, 1);
    double drift[] = { 1.00, 0.96, 1.04,   1.02, 0.98, 1.06 };       /* clocks moved, z still ahead each time */
    CHECK_INT("paired: drift between rounds does not hide a steady lead", choose_paired(pv, drift, 2, 3, 0.01, NULL), 0);
    double mixed[] = { 1.00, 1.03, 0.99,   1.02, 1.01, 1.03 };       /* z behind in round 2 */
    CHECK_INT("paired: ahead in only some rounds is a tie, the first by name wins",
              choose_paired(pv, mixed, 2, 3, 0.01, NULL), 1);
    choose_in close[] = { { "flash_v2", "z", 1.000, 0, 0 }, { "flash_v2", "a", 1.005, 0, 0 } };
    double always[] = { 1.000, 1.000, 1.000,   1.005, 1.005, 1.005 };
    CHECK_INT("paired: within the band is a tie even when ahead every round",
              choose_paired(close, always, 2, 3, 0.01, NULL), 1);
    choose_in gone[] = { { "flash_v2", "a", 0, 0, 0 }, { "flash_v2", "z", 1.0, 0, 0 } };
    double gone_r[] = { 0, 0, 0,   1.0, 1.0, 1.0 };
    CHECK_INT("paired: a finalist that dropped out cannot win", choose_paired(gone, gone_r, 2, 3, 0.01, &second), 1);
    CHECK_INT("...nor be the runner-up", second, -1);

    double x[] = { 3, 1, 2 };
    double spread;
    CHECK("median of three", choose_median(x, 3, &spread) == 2.0);
    CHECK("spread: (max - min) / median", spread == 1.0);
    double y[] = { 4, 1, 3, 2 };
    CHECK("median of four: the mean of the middle two", choose_median(y, 4, NULL) == 2.5);
    double z[] = { 1.0 };
    CHECK("one value: no spread", choose_median(z, 1, &spread) == 1.0 && spread == 0.0);
    return test_done("choose");
}
