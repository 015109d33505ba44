DROP TABLE linkv_wallet_moves;
DROP TABLE linkv_accounts;
