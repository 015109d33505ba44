DROP TABLE giftd_reshard_cut;
