CREATE TABLE orders (id int PRIMARY KEY, item text, qty int);
INSERT INTO orders VALUES (1, 'book', 2);
INSERT INTO orders VALUES (2, 'pen', 10), (3, 'ink', 1);
UPDATE orders SET qty = qty + 1 WHERE item = 'pen';
SELECT item, qty FROM orders ORDER BY id;
INSERT INTO orders VALUES (1, 'dup', 1);
SELECT * FROM missing_table;
DELETE FROM orders WHERE qty > 5;
DROP TABLE orders;
