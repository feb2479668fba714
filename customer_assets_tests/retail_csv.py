"""Small Online-Retail-shaped CSV sources for ingestion tests: the header and the column mapping
(cancellations start with "C"; no non-product codes) shared by the tests that write such files."""

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
MAPPING = {
    "customer_id": "CustomerID", "order_id": "InvoiceNo", "order_datetime": "InvoiceDate",
    "product_id": "StockCode", "product_name": "Description", "quantity": "Quantity",
    "unit_price": "UnitPrice", "country": "Country", "cancellation_prefix": "C",
}
