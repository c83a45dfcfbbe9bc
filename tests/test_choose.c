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
    choose_in none[] = { { "flash_v2", "a", 0, 0 }, { "flash_v2", "b", -1, 0 } };
    CHECK_INT("variants without a time cannot win", choose_winner(none, 2, 0.01, &second), -1);

    choose_in one[] = { { "flash_v2", "b", 1.0, 0 } };
    CHECK_INT("alone: the winner", choose_winner(one, 1, 0.01, &second), 0);
    CHECK_INT("alone: no runner-up", second, -1);

    /* b is 3% faster than a: a clear winner whatever the names say */
    choose_in clear[] = { { "flash_v2", "a", 1.03, 0 }, { "flash_v2", "b", 1.00, 0 }, { "flash_v1", "a", 2.0, 0 } };
    CHECK_INT("faster by more than the band: the fastest wins", choose_winner(clear, 3, 0.01, &second), 1);
    CHECK_INT("the runner-up is the next fastest", second, 0);

    /* within 1%: the first by family and parameter text, in whatever order they come */
    choose_in tie[] = { { "flash_v2", "z", 1.000, 0 }, { "flash_v2", "m", 1.008, 0 }, { "flash_v2", "a", 1.02, 0 } };
    CHECK_INT("within the band: the first by name", choose_winner(tie, 3, 0.01, &second), 1);
    CHECK_INT("the runner-up of a tie-break is the faster one", second, 0);
    choose_in tie2[] = { tie[2], tie[1], tie[0] };
    CHECK_INT("the same choice in another order", choose_winner(tie2, 3, 0.01, NULL), 1);
    choose_in fam[] = { { "flash_v2", "a", 1.000, 0 }, { "flash_v1", "z", 1.005, 0 } };
    CHECK_INT("the family name comes before the parameters", choose_winner(fam, 2, 0.01, NULL), 1);

    /* noise widens the band: 2% apart, but one of them varied by 3% between rounds */
    choose_in noisy[] = { { "flash_v2", "z", 1.00, 0.03 }, { "flash_v2", "a", 1.02, 0.005 } };
    CHECK_INT("a difference inside the measured noise is a tie", choose_winner(noisy, 2, 0.01, NULL), 1);
    choose_in quiet[] = { { "flash_v2", "z", 1.00, 0.005 }, { "flash_v2", "a", 1.02, 0.005 } };
    CHECK_INT("the same difference above the noise is a win", choose_winner(quiet, 2, 0.01, NULL), 0);
    choose_in other[] = { { "flash_v2", "z", 1.00, 0 }, { "flash_v2", "a", 1.02, 0.025 } };
    CHECK_INT("either variant's noise counts", choose_winner(other, 2, 0.01, NULL), 1);

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
